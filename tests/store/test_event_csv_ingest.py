"""Events CSV read by Polars (``store.ingest.csv_chunks``) against the row-by-row reference path, on files
shaped to stay on the Polars path for most chunks and to leave it where it could read differently: CRLF,
a BOM, blank lines and rows of blank cells, ragged rows, a lone CR, a NUL, bytes that are not UTF-8, a
quoted line break, another delimiter, gzip, no final newline, ids repeated within and across files."""

import gzip
import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine

from stages.portfolio import BUILTIN_EVENT_TYPES
from store.db import make_engine
from store.ingest import csv_chunks as csv_chunks_module
from store.ingest import ingest_events, ingest_leads
from store.ingest.columns import PLAIN_TIME, epoch_micros
from store.ingest.csv_chunks import CsvChunk, csv_chunks
from store.tables import to_micros
from tests.store.samples import ingest_summary, stored_events

LEADS = [f"L{n}" for n in range(1, 21)]
NAMES = ["event_id", "lead_id", "type", "occurred_at", "product_line", "message_id", "properties", "campaign"]
TYPES = ["email_delivered", "email_open", "page_view", "form_submit"]
CHUNK = 7


def _line(rng: random.Random, n: int, delimiter: str) -> str:
    kind = rng.choice(TYPES)
    properties = json.dumps({"url": f"/p/{n % 5}", "message_id": f"<m{n % 4}@x>"}).replace('"', '""')
    cells = [
        f"E{rng.randrange(n + 1) if rng.random() < 0.1 else n}",  # some ids repeat earlier ones
        rng.choice([*LEADS, "L999"]),
        kind,
        f"2026-03-01T09:00:0{rng.randrange(4)}Z",
        rng.choice(["", "crm", "ghost"]),
        f"<m{n % 4}@x>" if kind.startswith("email") else "",
        f'"{properties}"',
        rng.choice(["", "spring", "42", "0123"]),
    ]
    return delimiter.join(cells)


TROUBLES: dict[str, str] = {
    "ragged": "E900,L1,page_view",
    "too wide": "E901,L1,page_view,2026-03-01T09:00:00Z,,,,,extra",
    "blank line": "",
    "blank cells": ",  ,,,,,,",
    "lone CR": "E902,L1,page_view,2026-03-01T09:00:00Z,,,{},x\rE903,L2,page_view,2026-03-01T09:00:00Z,,,{},y",
    "NUL": "E904,L1,page_view,2026-03-01T09:00:00Z,,,{},\x00",
    "quoted newline": 'E905,L1,page_view,2026-03-01T09:00:00Z,,,"{""note"": ""two\nlines""}",x',
}


def _file(tmp_path: Path, name: str, troubles: list[tuple[int, str]], *, seed: int, **shape: Any) -> Path:
    """60 rows with the given troubles at the given row numbers; ``shape``: crlf, bom, delimiter, gz, no_eol."""
    rng = random.Random(seed)
    delimiter = shape.get("delimiter", ",")
    lines = [delimiter.join(NAMES)] + [_line(rng, n, delimiter) for n in range(seed * 100, seed * 100 + 60)]
    for at, trouble in sorted(troubles, reverse=True):
        lines.insert(at, TROUBLES[trouble])
    eol = "\r\n" if shape.get("crlf") else "\n"
    text = eol.join(lines) + ("" if shape.get("no_eol") else eol)
    data = (b"\xef\xbb\xbf" if shape.get("bom") else b"") + text.encode()
    if shape.get("not_utf8"):
        data = data.replace(b"spring", b"spr\xffng", 1)
    path = tmp_path / f"{name}.csv"
    if shape.get("gz"):
        path = path.with_suffix(".csv.gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


FILES: list[tuple[str, list[tuple[int, str]], dict[str, Any]]] = [
    ("plain", [], {}),
    ("crlf-bom", [(20, "ragged"), (33, "blank line")], {"crlf": True, "bom": True}),
    ("ragged", [(3, "ragged"), (9, "too wide"), (15, "blank line"), (16, "blank cells"), (40, "ragged")], {}),
    ("cr-nul", [(10, "lone CR"), (30, "NUL")], {}),
    ("semicolon", [], {"delimiter": ";", "no_eol": True}),
    ("gz-not-utf8", [(50, "blank line")], {"gz": True, "not_utf8": True}),
    ("quoted-newline", [(25, "quoted newline")], {"crlf": True}),
]


def test_polars_reads_plain_chunks_and_leaves_the_others_to_the_csv_module(tmp_path: Path) -> None:
    """The fast path is taken where it can be: a chunk with a ragged row or a blank line stays on it
    (those lines are read alone); a quoted line break hands the rest of the file to the ``csv`` module."""
    kinds = {}
    for name, troubles, shape in FILES:
        path = _file(tmp_path, name, troubles, seed=1, **shape)
        kinds[name] = ["polars" if isinstance(chunk, CsvChunk) else "csv" for chunk in csv_chunks(path, CHUNK)]
    assert set(kinds["plain"]) == set(kinds["crlf-bom"]) == set(kinds["ragged"]) == {"polars"}
    assert len(kinds["ragged"]) == 10  # 60 rows and 5 odd lines: 65 lines in chunks of 7
    assert set(kinds["semicolon"]) == {"polars"}
    # A lone CR, a NUL or bad UTF-8 in a chunk with quoted cells: the rest of the file is the csv module's.
    assert kinds["cr-nul"] == ["polars"] + ["csv"] * 8
    assert set(kinds["gz-not-utf8"]) == {"csv"}  # the first chunk has the byte
    assert kinds["quoted-newline"] == ["polars"] * 3 + ["csv"] * 6


@pytest.mark.parametrize("seed", [1, 2])
def test_events_read_by_polars_equal_the_row_by_row_reference(engine: Engine, tmp_path: Path, seed: int) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,email\n" + "".join(f"{lead},{lead.lower()}@example.com\n" for lead in LEADS))
    reference = make_engine(f"sqlite:///{tmp_path}/reference.db")
    for store in (reference, engine):
        ingest_leads(store, leads)
    options: dict[str, Any] = {"event_types": BUILTIN_EVENT_TYPES, "product_lines": {"crm"}, "chunk_size": CHUNK}
    files = [_file(tmp_path, name, troubles, seed=seed + n, **shape) for n, (name, troubles, shape) in enumerate(FILES)]
    for path in files + files[:2]:  # ids repeat across files; the re-ingest of two files changes nothing
        expected = ingest_events(reference, path, row_by_row=True, **options)
        actual = ingest_events(engine, path, **options)
        assert ingest_summary(actual) == ingest_summary(expected), path.name
        assert expected.rejected > 0 and expected.read > 50, path.name  # unknown leads and lines at least
    expected_store, actual_store = stored_events(reference), stored_events(engine)
    assert actual_store == expected_store
    assert len(expected_store[0]) > 150
    assert {(field, reason) for *_, field, reason, _ in expected_store[1]} >= {
        (None, "row has 3 values but the header has 8 columns"),
        (None, "row has 9 values but the header has 8 columns"),
        ("campaign", "contains a NUL character (\\x00), which the database cannot store"),
    }
    reference.dispose()


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.5Z",
        "1999-12-31T23:59:59.000001-12:00",
        "2024-02-29T23:59:59.123456+05:30",
        "2026-01-01T00:00:00.1-00:30",
        "1900-03-01T00:00:00+23:59",
        "2023-02-29T00:00:00Z",  # the calendar refuses it: null
    ],
)
def test_epoch_micros_reads_plain_times_as_fromisoformat_does(text: str) -> None:
    """The columnar path's time parser (fraction and zone sliced by hand) against Python's own."""
    try:
        expected = to_micros(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        expected = None
    frame = pl.DataFrame({"t": [text]}).select(plain=pl.col("t").str.contains(PLAIN_TIME), at=epoch_micros(pl.col("t")))
    assert frame.row(0) == (True, expected)


def test_a_chunk_says_whether_its_cells_may_hold_a_separator(tmp_path: Path) -> None:
    """Python's ``str.strip`` removes \\x1c-\\x1f, Polars' does not: only a chunk whose bytes hold one has
    its cells' edges checked for them (such a row goes to the row model)."""
    chunk = _only_chunk(tmp_path, "E1,L1,page_view,2026-01-01T00:00:00Z\nE2,L2\x1d,page_view,2026-01-01T00:00:00Z\n")
    assert chunk.separators
    assert not _only_chunk(tmp_path, "E1,L1,page_view,2026-01-01T00:00:00Z\n").separators


def _only_chunk(tmp_path: Path, body: str) -> CsvChunk:
    path = tmp_path / "events.csv"
    path.write_text("event_id,lead_id,type,occurred_at\n" + body)
    (chunk,) = csv_chunks(path, 100)
    assert isinstance(chunk, CsvChunk)
    return chunk


@pytest.mark.parametrize("polars", [True, False])
def test_the_first_chunks_are_read_at_their_own_sizes(tmp_path: Path, polars: bool) -> None:
    """``first`` sizes come before ``size``, read no further than they need, on either reader (a quoted
    line break sends the rest of the file to the ``csv`` path, which goes on with the sizes left)."""
    path = tmp_path / "events.csv"
    rows = [f"E{n},L1,page_view,2026-01-01T00:00:00Z" for n in range(1, 11)]
    if not polars:
        rows[0] = 'E1,"L\n1",page_view,2026-01-01T00:00:00Z'
    path.write_text("event_id,lead_id,type,occurred_at\n" + "\n".join(rows) + "\n")
    chunks = list(csv_chunks(path, 4, first=(2, 3)))
    assert [isinstance(chunk, CsvChunk) for chunk in chunks] == [polars] * 4
    first_lines = [chunk.lines[0] if isinstance(chunk, CsvChunk) else chunk[0].line for chunk in chunks]
    sizes = [len(chunk) for chunk in chunks]
    assert (sizes, first_lines) == ([2, 3, 4, 1], [2, 4, 7, 11] if polars else [2, 5, 8, 12])


@pytest.mark.parametrize("block", [7, 100, 1 << 24])
def test_chunks_end_at_the_same_lines_however_many_bytes_a_read_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """A chunk's lines spread over many reads, or many chunks in one read: the same chunks either way,
    up to a last line without its line break."""
    monkeypatch.setattr(csv_chunks_module, "_BLOCK", block)
    path = tmp_path / "events.csv"
    rows = [f"E{n},L{n * 7},page_view,2026-01-01T00:00:0{n % 10}Z" for n in range(1, 12)]
    path.write_text("event_id,lead_id,type,occurred_at\n" + "\n".join(rows))
    chunks = list(csv_chunks(path, 4, first=(2, 3)))
    assert all(isinstance(chunk, CsvChunk) for chunk in chunks)
    assert [chunk.lines for chunk in chunks] == [[2, 3], [4, 5, 6], [7, 8, 9, 10], [11, 12]]  # type: ignore[union-attr]
    ids = [chunk.cells["event_id"].to_list() for chunk in chunks]  # type: ignore[union-attr]
    assert ids == [["E1", "E2"], ["E3", "E4", "E5"], ["E6", "E7", "E8", "E9"], ["E10", "E11"]]
