"""A big events file stored in lead order (``store.ingest.lead_order``): the order it hands chunks over in,
and the store and report it leaves, against the row-by-row reference on randomised files."""

import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from store.db import make_engine
from store.ingest import ingest_events, ingest_leads, lead_order
from store.ingest.csv_chunks import CsvChunk, csv_chunks
from store.ingest.lead_order import lead_ordered
from store.ingest.machine import MACHINE_CANDIDATES
from tests.store.samples import ingest_summary, stored_events
from tests.store.test_ingest_equivalence import LEADS, LINES, TYPES, _csv, _event


@pytest.fixture
def small_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reorder files of more than 100 rows, in key ranges of about 120 rows."""
    monkeypatch.setattr(lead_order, "SORT_ROWS", 100)
    monkeypatch.setattr(lead_order, "RANGE_ROWS", 120)


def test_chunks_come_in_lead_order_then_unknown_leads_then_repeats(tmp_path: Path, small_sort: None) -> None:
    rng = random.Random(7)
    rows = [(f"E{n}", f"L{rng.randrange(40)}", f"2026-03-01T09:{rng.randrange(60):02d}:00Z") for n in range(500)]
    rows[10] = ("E3", "L5", "2026-03-01T08:00:00Z")  # repeats E3 of line 5: held back to the end
    rows[20] = ("E20", "nobody", "2026-03-01T08:00:00Z")  # no stored lead: after the known ones
    rows[30] = ("E1", "L1", "2026-03-01T08:00:00Z")  # repeats E1 of line 3
    rows[40] = ("E40", "L999", "2026-03-01T08:00:00Z")
    path = tmp_path / "events.csv"
    path.write_text("event_id,lead_id,occurred_at\n" + "".join(",".join(row) + "\n" for row in rows) + "a,b\n")
    keys = {f"L{n}": 100 - n for n in range(40)}  # a key order unlike the ids'
    asked: list[str] = []

    def keys_of(lead_ids: list[str]) -> dict[str, int]:
        asked.extend(lead_ids)
        return keys

    chunks = list(lead_ordered(csv_chunks(path, 37), keys_of, 37))
    assert all(isinstance(chunk, CsvChunk) for chunk in chunks)
    assert [len(chunk) for chunk in chunks] == [38] + [37] * 12 + [19]  # the ragged last line rides first
    ragged = [(row.line, row.error) for row in chunks[0].unreadable]  # type: ignore[union-attr]
    assert ragged == [(502, "row has 2 values but the header has 3 columns")]
    handed = [(line, *chunk.cells.row(n)) for chunk in chunks for n, line in enumerate(chunk.lines)]  # type: ignore[union-attr]
    numbered = [(n + 2, *row) for n, row in enumerate(rows)]
    firsts = [row for row in numbered if row[2] in keys and row[0] not in (12, 32)]  # of a known lead, not repeats
    assert handed == [
        *sorted(firsts, key=lambda r: (keys[r[2]], r[0])),
        numbered[20],
        numbered[40],
        numbered[10],
        numbered[30],
    ]
    assert set(asked) == {row[1] for row in rows}  # each chunk asks for its distinct ids


def test_a_small_file_keeps_its_order(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("event_id,lead_id\n" + "".join(f"E{n},L{n % 3}\n" for n in range(100)))
    chunks = list(lead_ordered(csv_chunks(path, 30), lambda ids: {"L0": 3, "L1": 2, "L2": 1}, 30))
    assert [line for chunk in chunks for line in chunk.lines] == list(range(2, 102))  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_lead_ordered_load_equals_the_row_by_row_reference(tmp_path: Path, small_sort: None, seed: int) -> None:
    """Bad rows, repeated ids (within and across files), machine activity, unknown leads; every other file
    has visitors' rows, which end the reordering where they start. Same store, same report but the count
    of opens flagged after they were stored (``updated``): in lead order a delivery may come before its
    open that came after it in the file. A repeated id's open or click repeats its first row: the reference
    flags the first row of an id as machine activity when a repeat of it is an open matched by a delivery
    later in the file, but not when the delivery came earlier (lead order hands repeats over last)."""
    rng = random.Random(seed)
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,email\n" + "".join(f"{lead},{lead.lower()}@example.com\n" for lead in reversed(LEADS)))
    engines = [make_engine(f"sqlite:///{tmp_path}/{name}.db") for name in ("reference", "ordered")]
    for engine in engines:
        ingest_leads(engine, leads)
    ids: list[str] = []
    firsts: dict[str, dict[str, Any]] = {}
    files = []
    for index in range(4):
        rows = []
        for n in range(index * 1000, index * 1000 + 400):
            row = _event(rng, n, ids)
            if row["event_id"] in firsts and row["type"] in MACHINE_CANDIDATES:
                row = dict(firsts[row["event_id"]])  # see the docstring
            firsts.setdefault(row["event_id"], row)
            if index % 2 == 0:
                row.pop("anonymous_id", None)
            else:
                row.setdefault("anonymous_id", "")
            rows.append(row)
            ids.append(row["event_id"])
        files.append(_csv(tmp_path / f"events_{index}.csv", rows, crlf=index == 2, bom=index == 2))
    options: dict[str, Any] = {"event_types": TYPES, "product_lines": LINES, "chunk_size": 37}
    reference, ordered = engines
    for path in files + files[:1]:  # a re-ingest changes nothing, alike
        expected = ingest_summary(ingest_events(reference, path, row_by_row=True, **options))
        actual = ingest_summary(ingest_events(ordered, path, **options))
        assert _but_updated(actual) == _but_updated(expected), path.name
    expected_store = stored_events(reference)
    assert stored_events(ordered) == expected_store
    assert any(len(row) > 5 and row[5] is True for row in expected_store[0])  # machine activity was flagged
    for engine in engines:
        engine.dispose()


def _but_updated(summary: tuple[Any, ...]) -> tuple[Any, ...]:
    (read, accepted, inserted, _, rejected), rejects, interests = summary
    return (read, accepted, inserted, rejected), rejects, interests


def test_lead_order_is_used_by_ingest_events(tmp_path: Path, small_sort: None, monkeypatch: pytest.MonkeyPatch) -> None:
    engine: Engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    ingest_leads(engine, _csv(tmp_path / "leads.csv", [{"lead_id": lead} for lead in LEADS], crlf=False, bom=False))
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,lead_id,type,occurred_at\n"
        + "".join(f"E{n},{LEADS[n % 30]},page_view,2026-03-01T09:00:00Z\n" for n in range(300))
    )
    seen: list[int] = []
    original = lead_order._Spill.add

    def add(spill: Any, chunk: CsvChunk) -> None:
        seen.append(len(chunk))
        original(spill, chunk)

    monkeypatch.setattr(lead_order._Spill, "add", add)
    report = ingest_events(engine, path, event_types=TYPES, chunk_size=50)
    assert (report.read, report.inserted, sum(seen)) == (300, 300, 300)
    engine.dispose()
