"""A probability model's estimator on disk: written with skops (no pickle) as the same bytes for the same
model, and loaded only when its SHA-256 matches the model file and it holds no unexpected types."""

import functools
import hashlib
import io
import re
import zipfile
from pathlib import Path
from typing import Any

TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.", "builtins.")
ADDRESS = re.compile(r'"__id__": (\d+)|"(\d+)\.npy"')


def save(estimator: Any, path: Path) -> str:
    """Write the estimator with skops (no pickle: loading it cannot run arbitrary code); returns its SHA-256."""
    import skops.io

    packed = skops.io.dumps(estimator)
    # skops names arrays and shared objects by their memory address and stamps each zip entry with the
    # current time; numbering the addresses in order of appearance and fixing the stamps makes the same
    # model the same bytes (and so the same sha256 in the YAML).
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(packed)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        schema = source.read("schema.json").decode()
        numbers: dict[str, str] = {}
        for found in ADDRESS.finditer(schema):
            numbers.setdefault(found.group(1) or found.group(2), str(len(numbers)))
        renumbered = ADDRESS.sub(
            lambda m: f'"__id__": {numbers[m.group(1)]}' if m.group(1) else f'"{numbers[m.group(2)]}.npy"', schema
        )
        for info in source.infolist():
            name, data = info.filename, source.read(info)
            if name == "schema.json":
                data = renumbered.encode()
            elif name.endswith(".npy") and name[:-4] in numbers:
                name = f"{numbers[name[:-4]]}.npy"
            target.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    path.write_bytes(out.getvalue())
    return hashlib.sha256(out.getvalue()).hexdigest()


@functools.lru_cache(maxsize=8)
def load(path: Path, sha256: str) -> Any:
    """The estimator of a model file, once per process; a file that changed since learning is refused."""
    import skops.io

    if not path.is_file():
        raise ValueError(f"{path}: the probability model's estimator is missing (it is written next to the YAML)")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{path}: the estimator does not match the model file's sha256 (replaced or corrupted)")
    untrusted = skops.io.get_untrusted_types(data=data)
    # functools.partial only wraps functions, which skops lists (and this check vets) on their own.
    foreign = [t for t in untrusted if not t.startswith(TRUSTED_MODULES) and t != "functools.partial"]
    if foreign:
        raise ValueError(f"{path}: refusing to load unexpected types {foreign}")
    return skops.io.loads(data, trusted=untrusted)
