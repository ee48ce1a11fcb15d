"""Reading files into physical rows: CSV cells or JSON objects with their line, or why a line is unreadable."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Any

import orjson

from store.csvfile import data_suffix, not_utf8, open_csv, open_text

NUMBER = re.compile(r"^-?(?:0|[1-9]\d*)(\.\d+)?(?:[eE][+-]?\d+)?$")  # JSON's grammar: "0123" stays text

# Called with the number of rows read and handled so far, after each chunk (a CLI progress bar).
Progress = Callable[[int], None]


class Raw:
    """One physical row: its line and what the file said — a JSON object (``data``) or CSV cells
    (``values`` under the header's ``names``, turned into a dict only when needed) — or why it could
    not be read (``error``)."""

    __slots__ = ("data", "error", "line", "names", "values")

    def __init__(
        self,
        line: int,
        data: dict[str, Any] | None = None,
        values: list[str] | None = None,
        names: list[str] | None = None,
        error: str | None = None,
    ) -> None:
        self.line, self.data, self.values, self.names, self.error = line, data, values, names, error

    @property
    def raw(self) -> dict[str, Any]:
        """The row as a dict, for rejects and for the lead splitter."""
        if self.data is not None:
            return self.data
        names, values = self.names or [], self.values or []
        raw: dict[str, Any] = dict(zip(names, values, strict=False))
        if len(values) > len(names):
            raw["_extra_values"] = values[len(names) :]
        return raw


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text} is out of range")
    return number


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:  # orjson refuses some valid JSON (integers beyond 64 bits, deep nesting); json decides
        return json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)


def number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


@dataclass(frozen=True)
class Records:
    """Rows that arrive as JSON values rather than a file (the HTTP service): each item's position from 1
    is its "line" in rejects, ``source`` names the request. The same validation and writes as a file."""

    source: str
    items: Sequence[Any]


def read_rows(path: Path | Records) -> Iterator[Raw]:
    """The reader for the file's kind (returned, not delegated to: one generator hop less per row)."""
    if isinstance(path, Records):
        return _read_records(path)
    suffix = data_suffix(path)
    if suffix == ".csv":
        return _read_csv(path)
    elif suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use .csv, .jsonl or .ndjson (or .gz of one)")


def _read_csv(path: Path) -> Iterator[Raw]:
    with open_csv(path) as (names, rows):
        for line, values, error in rows:
            yield Raw(line, None, values, names, error)


def _read_jsonl(path: Path) -> Iterator[Raw]:
    with open_text(path, newline=None, errors="surrogateescape") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            if (error := not_utf8(text)) is not None:
                printable = text.encode("utf-8", "replace").decode().rstrip("\r\n")[:2000]
                yield Raw(line, {"_text": printable}, error=error)
                continue
            try:
                value = loads(text)
            except ValueError as exc:
                yield Raw(line, {"_text": text.rstrip("\r\n")[:2000]}, error=f"not valid JSON: {exc}")
                continue
            if not isinstance(value, dict):
                error = f"expected a JSON object, got {type(value).__name__}"
                yield Raw(line, {"_text": text.rstrip("\r\n")[:2000]}, error=error)
                continue
            yield Raw(line, value)


def _read_records(records: Records) -> Iterator[Raw]:
    for line, value in enumerate(records.items, start=1):
        if isinstance(value, dict):
            yield Raw(line, value)
        else:
            yield Raw(line, {"_value": value}, error=f"expected a JSON object, got {type(value).__name__}")


def is_csv(path: Path | Records) -> bool:
    """Whether the rows are CSV cells (text values) rather than JSON values."""
    return isinstance(path, Path) and data_suffix(path) == ".csv"


def chunk_sizes(size: int, first: Sequence[int] = ()) -> Iterator[int]:
    """Rows per chunk: the ``first`` sizes, then ``size`` for ever."""
    return chain(first, repeat(size))


def chunks(rows: Iterator[Raw], size: int, first: Sequence[int] = ()) -> Iterator[list[Raw]]:
    """``rows`` in lists of ``chunk_sizes(size, first)`` rows."""
    sizes = chunk_sizes(size, first)
    while chunk := list(islice(rows, next(sizes))):
        yield chunk
