"""CSV read the same way everywhere: physical line numbers (a quoted cell may span lines), the header
checked, blank lines skipped, and a row of the wrong width reported rather than guessed at.

A hostile row is reported on its own line and the rest of the file is read: a cell over the size
limit, bytes that are not UTF-8. A file whose header has no comma but a ``;``, tab or ``|`` is read
with that delimiter (spreadsheets in many locales save ``;``).
"""

import csv
import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, TextIO

FIELD_LIMIT = 1 << 20  # characters per cell: a 1 MB cell is data, a 10 MB one is a broken file
OTHER_DELIMITERS = (";", "\t", "|")
csv.field_size_limit(FIELD_LIMIT)


class CsvRow(NamedTuple):
    """One data row: its physical line, its cells, why it cannot be used (None: it can). A named tuple:
    a million of them are made per million rows, and a frozen dataclass costs twice as much to build."""

    line: int
    values: list[str]
    error: str | None = None


def open_text(path: Path, newline: str | None = "", errors: str = "strict") -> TextIO:
    """A UTF-8 text file (a BOM skipped), gunzipped on the fly when its name ends in ``.gz``: history is
    exported compressed, and decompressing while reading costs less than a copy on disk."""
    path = Path(path)
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", newline=newline, encoding="utf-8-sig", errors=errors)
    return path.open(newline=newline, encoding="utf-8-sig", errors=errors)


def data_suffix(path: Path) -> str:
    """The suffix that says the format, under a ``.gz``: ``.csv`` for ``events.csv.gz``."""
    path = Path(path)
    return (path.with_suffix("") if path.suffix.lower() == ".gz" else path).suffix.lower()


def not_utf8(text: str) -> str | None:
    """Why text read with ``surrogateescape`` is not UTF-8 (None when it is): the first undecodable byte."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # surrogateescape kept the undecodable bytes as lone surrogates
        return f"not UTF-8 text (byte 0x{ord(text[exc.start]) - 0xDC00:02x}); save the file as UTF-8"
    return None


def delimiter_of(first_line: str) -> str:
    """``,`` unless the header has none and one of ``OTHER_DELIMITERS`` splits it."""
    if "," in first_line:
        return ","
    found = [(first_line.count(d), d) for d in OTHER_DELIMITERS if d in first_line]
    return max(found)[1] if found else ","


@contextmanager
def open_csv(path: Path) -> Iterator[tuple[list[str], Iterator[CsvRow]]]:
    """The header's column names (empty for an empty file) and the data rows."""
    with open_text(path, errors="surrogateescape") as handle:
        delimiter = delimiter_of(handle.readline())
        handle.seek(0)  # the decoder starts afresh: a BOM is skipped again
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        names = [name.strip() for name in header or []]
        if (error := not_utf8("".join(names))) is not None:
            raise ValueError(f"{path}: the header row is {error}")
        if any(not name for name in names):
            raise ValueError(f"{path}: the header row has an empty column name: {header}")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"{path}: the header row repeats column(s) {duplicates}")
        yield names, data_rows(reader, len(names))


def data_rows(reader: "csv._reader", width: int) -> Iterator[CsvRow]:
    """The data rows. Checks run on a row's joined cells (undecodable bytes and delimiters never share
    a cell's characters), not per physical line in Python: a million rows read in ≈ 1 s less."""
    last = reader.line_num
    while True:
        try:
            for values in reader:  # a plain for loop: no per-row next() call and try block
                line, last = last + 1, reader.line_num
                joined = "".join(values)
                if not joined.isascii() and (bad := not_utf8(joined)) is not None:
                    yield CsvRow(line, [value.encode("utf-8", "replace").decode() for value in values], bad)
                elif not joined.strip():  # a blank line, or only blank cells
                    continue
                elif len(values) == width:
                    yield CsvRow(line, values)
                else:
                    yield CsvRow(line, values, f"row has {len(values)} values but the header has {width} columns")
            return
        except csv.Error as exc:  # a cell over FIELD_LIMIT, a NUL byte: this row only, then read on
            line, last = last + 1, reader.line_num
            yield CsvRow(line, [], f"unreadable CSV row: {exc}")
