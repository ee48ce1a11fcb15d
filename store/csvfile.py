"""CSV read the same way everywhere: physical line numbers (a quoted cell may span lines), the header
checked, blank lines skipped, and a row of the wrong width reported rather than guessed at."""

import csv
import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    values: list[str]
    error: str | None = None


def open_text(path: Path, newline: str | None = "") -> TextIO:
    """A UTF-8 text file (a BOM skipped), gunzipped on the fly when its name ends in ``.gz``: history is
    exported compressed, and decompressing while reading costs less than a copy on disk."""
    path = Path(path)
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", newline=newline, encoding="utf-8-sig")
    return path.open(newline=newline, encoding="utf-8-sig")


def data_suffix(path: Path) -> str:
    """The suffix that says the format, under a ``.gz``: ``.csv`` for ``events.csv.gz``."""
    path = Path(path)
    return (path.with_suffix("") if path.suffix.lower() == ".gz" else path).suffix.lower()


@contextmanager
def open_csv(path: Path) -> Iterator[tuple[list[str], Iterator[CsvRow]]]:
    """The header's column names (empty for an empty file) and the data rows."""
    with open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        names = [name.strip() for name in header or []]
        if any(not name for name in names):
            raise ValueError(f"{path}: the header row has an empty column name: {header}")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"{path}: the header row repeats column(s) {duplicates}")
        yield names, _rows(reader, len(names))


def _rows(reader: "csv._reader", width: int) -> Iterator[CsvRow]:
    last = reader.line_num
    for values in reader:
        line, last = last + 1, reader.line_num
        if not any(value.strip() for value in values):
            continue
        error = None if len(values) == width else f"row has {len(values)} values but the header has {width} columns"
        yield CsvRow(line, values, error)
