"""CSV chunks read by Polars, line numbers and all, with Python's ``csv`` reader where Polars could differ.

Python's reader costs ≈ 6 CPU s per million event rows once each row is a Python object; Polars reads
the same bytes in a fraction of that. A chunk of ``size`` physical lines is taken as Polars columns only
when every line is one whole record of the header's width in plain CSV (fields unquoted, or quoted
with doubled quotes inside, no line break in a cell), the bytes are UTF-8 without NULs and no cell is
longer than ``FIELD_LIMIT``: then record *i* is line *first + i*, exactly as the ``csv`` path numbers
it. A line without a quote character that is not such a record (a ragged row, a blank line) is read
alone by the ``csv`` path (``store.csvfile``). Any other chunk (a line that may open a quoted line
break, a lone CR, a NUL, bytes that are not UTF-8) is read by the ``csv`` path: the chunk alone when it
has no quote character at all, otherwise the rest of the file, because a quoted cell may run over the
chunk's end. The same results either way; only the speed differs.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from store.csvfile import FIELD_LIMIT, data_rows, delimiter_of, open_csv
from store.ingest.reading import Raw, chunk_sizes

_BLOCK = 1 << 24  # bytes read at a time
_LINE_COLUMN = "line"
_SEPARATORS = [bytes([code]) for code in range(0x1C, 0x20)]


@dataclass
class CsvChunk:
    """Data rows of a CSV file as Polars columns (``cells``: one String column per header name, blank
    cells as ""), each row's physical ``lines``; ``row(i)`` makes the ``Raw`` a reject or the row model
    needs, for the few rows that need one."""

    names: list[str]
    cells: pl.DataFrame
    lines: list[int]
    unreadable: list[Raw]  # rows the ``csv`` path reports (a ragged row), with their ``error``
    # Whether a cell may hold one of the separators \x1c–\x1f, which Python's ``str.strip`` removes and
    # Polars' does not: a chunk whose bytes hold none skips the per-cell check for them.
    separators: bool = True

    def __len__(self) -> int:
        return self.cells.height + len(self.unreadable)

    def row(self, position: int) -> Raw:
        return Raw(self.lines[position], None, list(self.cells.row(position)), self.names)


def _record(delimiter: str, width: int) -> str:
    """One line that is exactly one record of ``width`` plain fields (Rust regex syntax, for Polars)."""
    d = f"\\x{ord(delimiter):02x}"
    cell = f'(?:[^"{d}\\r\\n]*|"(?:[^"\\r\\n]|"")*")'
    return f"^{cell}(?:{d}{cell}){{{width - 1}}}$"


@contextmanager
def _binary(path: Path) -> Iterator[BinaryIO]:
    with gzip.open(path, "rb") if path.suffix.lower() == ".gz" else path.open("rb") as handle:
        yield handle  # type: ignore[misc]


def _line_blocks(handle: BinaryIO, sizes: Iterator[int]) -> Iterator[tuple[bytes, int, int]]:
    """Blocks of whole lines (``\\n``-terminated; the file's last line may lack it), as many a block as
    ``sizes`` says in turn, each with that size and the lines it holds (fewer in the last block).

    Reads are counted (``bytes.count``), and only the read where a block ends is searched for the place
    of its last line break; a block is joined from its reads once (no growing buffer copied per read)."""
    parts: list[bytes] = []  # read and not yet yielded
    counts: list[int] = []  # the line breaks in each
    eof = False
    while True:
        size = next(sizes)
        while sum(counts) < size and not eof:
            more = handle.read(_BLOCK)
            eof = not more
            parts.append(more)
            counts.append(more.count(b"\n"))
        if sum(counts) >= size:
            last, before = parts[-1], sum(counts[:-1])
            ends = np.flatnonzero(np.frombuffer(last, dtype=np.uint8) == 10)
            cut = int(ends[size - before - 1]) + 1
            yield b"".join([*parts[:-1], last[:cut]]), size, size
            parts, counts = [last[cut:]], [counts[-1] - (size - before)]
        else:
            pending = b"".join(parts)
            if pending:
                yield pending, size, sum(counts) + (not pending.endswith(b"\n"))
            return


def csv_chunks(path: Path, size: int, first: Sequence[int] = ()) -> Iterator[CsvChunk | list[Raw]]:
    """The file's data rows, ``size`` physical lines at a time (the ``first`` chunks: as many as it says,
    read no further than they need): Polars columns, or ``Raw`` rows where the ``csv`` path reads them.
    Header checks and the delimiter are the ``csv`` path's own."""
    sizes = chunk_sizes(size, first)
    with open_csv(path) as (names, _):
        pass  # the header checks (and the error for a bad header)
    with _binary(path) as handle:
        header = handle.readline()
        text = header.decode("utf-8-sig", errors="replace")
        if '"' in text or "\r" in text.removesuffix("\r\n") or len(names) < 2:
            yield from _python_rows(path, names, 1, sizes)  # a header whose lines we would not count alike
            return
        delimiter = delimiter_of(text)
        pattern, line = _record(delimiter, len(names)), 2
        for block, block_size, block_lines in _line_blocks(handle, sizes):
            chunk = _plain(block, delimiter, pattern, line, names)
            if chunk is not None:
                yield chunk
                line += block_lines
            elif b'"' not in block:
                rows, line_count = _block_rows(block, delimiter, names, line)
                yield rows
                line += line_count
            else:
                yield from _python_rows(path, names, line, chain([block_size], sizes))
                return


def _without_blank_rows(chunk: CsvChunk) -> CsvChunk:
    """Rows whose cells are all blank are skipped, as the ``csv`` path does (Python's idea of blank)."""
    cells = chunk.cells
    maybe_blank = cells.select(pl.concat_str(pl.all()).str.contains(r"^[\s\x1c-\x1f]*$").alias("blank"))["blank"]
    if not maybe_blank.any():
        return chunk
    blank = [n for n in maybe_blank.arg_true().to_list() if not "".join(cells.row(n)).strip()]
    if not blank:
        return chunk
    keep = ~pl.int_range(cells.height, eager=True).is_in(blank)
    lines = pl.Series(chunk.lines).filter(keep).to_list()
    return replace(chunk, cells=cells.filter(keep), lines=lines)


def _plain(block: bytes, delimiter: str, pattern: str, first: int, names: list[str]) -> CsvChunk | None:
    """The block as Polars columns when every line is a plain record or a line without quotes that the
    ``csv`` path reads on its own (a ragged row, a blank line); None: let the ``csv`` path read it."""
    if b"\x00" in block or b"\x01" in block or (b"\r" in block and block.count(b"\r") != block.count(b"\r\n")):
        return None
    if not block.isascii():
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            return None
    physical = pl.read_csv(
        block, has_header=False, separator="\x01", quote_char=None, infer_schema=False, new_columns=[_LINE_COLUMN]
    )[_LINE_COLUMN]
    if (physical.str.len_chars().max() or 0) > FIELD_LIMIT:  # type: ignore[operator]
        return None
    plain = physical.str.contains(pattern).fill_null(False)
    lines = pl.int_range(first, first + len(physical), eager=True)
    unreadable: list[Raw] = []
    if not plain.all():
        odd = physical.filter(~plain).fill_null("")
        if odd.str.contains('"').any():
            return None  # perhaps a quoted line break: records and lines may differ from here on
        reader = csv.reader(odd.to_list(), delimiter=delimiter)
        odd_lines = lines.filter(~plain).to_list()
        unreadable = [
            Raw(odd_lines[row.line - 1], None, row.values, names, row.error) for row in data_rows(reader, len(names))
        ]
        if any(row.error is None for row in unreadable):
            return None  # a record the pattern does not know: the ``csv`` path reads the block
        block = "\n".join(physical.filter(plain).to_list()).encode()
        lines = lines.filter(plain)
    if lines.is_empty():
        return CsvChunk(names, pl.DataFrame(schema=dict.fromkeys(names, pl.String)), [], unreadable)
    cells = pl.read_csv(block, has_header=False, separator=delimiter, infer_schema=False, new_columns=names)
    separators = any(separator in block for separator in _SEPARATORS)  # 4 scans: 2 ms for 15 MB, a regex 45
    return _without_blank_rows(CsvChunk(names, cells.fill_null(""), lines.to_list(), unreadable, separators))


def _block_rows(block: bytes, delimiter: str, names: list[str], first: int) -> tuple[list[Raw], int]:
    """A block without quote characters read by the ``csv`` path; returns its rows and physical lines."""
    text = block.decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = [Raw(first - 1 + row.line, None, row.values, names, row.error) for row in data_rows(reader, len(names))]
    return rows, reader.line_num


def _python_rows(path: Path, names: list[str], first: int, sizes: Iterator[int]) -> Iterator[list[Raw]]:
    """The ``csv`` path from physical line ``first`` on, in chunks of ``sizes`` rows."""
    with open_csv(path) as (_, rows):
        chunk: list[Raw] = []
        size = next(sizes)
        for line, values, error in rows:
            if line < first:
                continue
            chunk.append(Raw(line, None, values, names, error))
            if len(chunk) == size:
                yield chunk
                chunk, size = [], next(sizes)
        if chunk:
            yield chunk
