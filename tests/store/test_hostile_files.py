"""Hostile but realistic files: each bad row is a reject with its line and reason, the good rows around it
are stored, and nothing non-finite reaches the store."""

import json
import math
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from stages.spec import BUILTIN_EVENT_TYPES
from store.ingest import ingest_events, ingest_leads
from store.tables import Event, Lead

TYPES = set(BUILTIN_EVENT_TYPES)
HEADER = "event_id,lead_id,type,occurred_at,url\n"


def _leads(engine: Engine, tmp_path: Path, *ids: str) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("lead_id,email\n" + "".join(f"{i},{i.lower()}@example.com\n" for i in ids))
    ingest_leads(engine, path)


def _event_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(Event.event_id)).scalars())


def _row(n: int, url: str = "/p", at: str = "2026-11-01T10:00:00Z") -> str:
    return f"e{n},L1,page_view,{at},{url}\n"


def test_a_huge_cell_an_unconvertible_time_and_non_utf8_bytes_reject_their_rows_only(
    engine: Engine, tmp_path: Path
) -> None:
    _leads(engine, tmp_path, "L1")
    path = tmp_path / "events.csv"
    with path.open("wb") as handle:
        handle.write(HEADER.encode())
        handle.write(_row(1).encode())
        handle.write(_row(2, url="x" * 10_000_000).encode())  # line 3: a 10 MB cell
        handle.write(_row(3, at="0001-01-01T00:00:00+14:00").encode())  # line 4: before UTC's first instant
        handle.write(_row(4, url="/caf\xe9").encode("latin-1"))  # line 5: Latin-1, not UTF-8
        handle.writelines(_row(n).encode() for n in range(5, 1005))  # lines 6 to 1005: all good
    report = ingest_events(engine, path, event_types=TYPES)
    assert (report.read, report.accepted, report.rejected) == (1004, 1001, 3)
    assert [(r.line, r.field, r.reason) for r in report.rejects] == [
        (3, None, "unreadable CSV row: field larger than field limit (1048576)"),
        (4, "occurred_at", "'0001-01-01T00:00:00+14:00' is out of range once converted to UTC"),
        (5, None, "not UTF-8 text (byte 0xe9); save the file as UTF-8"),
    ]
    assert len(_event_ids(engine)) == 1001


def test_json_lines_nested_too_deep_non_utf8_or_non_finite_reject_their_lines_only(
    engine: Engine, tmp_path: Path
) -> None:
    _leads(engine, tmp_path, "L1")
    good = {"lead_id": "L1", "type": "page_view", "occurred_at": "2026-11-01T10:00:00Z"}
    lines = [
        json.dumps({**good, "event_id": "e1"}).encode(),
        b'{"event_id": "e2", "properties": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        json.dumps({**good, "event_id": "e3", "properties": {"u": "caf\xe9"}}).encode().replace(b"\\u00e9", b"\xe9"),
        json.dumps({**good, "event_id": "e4"}).encode().replace(b"}", b', "duration_s": 1e400}'),
        json.dumps({**good, "event_id": "e5"}).encode().replace(b"}", b', "duration_s": NaN}'),
        json.dumps({**good, "event_id": "e6", "duration_s": "inf"}).encode(),
        json.dumps({**good, "event_id": "e7"}).encode(),
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = ingest_events(engine, path, event_types=TYPES)
    assert [(r.line, r.field, r.reason) for r in report.rejects] == [
        (2, None, "not valid JSON: nested too deeply"),
        (3, None, "not UTF-8 text (byte 0xe9); save the file as UTF-8"),
        (4, None, "not valid JSON: number 1e400 is out of range"),
        (5, None, "not valid JSON: NaN is not a number JSON allows"),
        (6, "properties", "duration_s must be a finite number, got 'inf'"),
    ]
    assert _event_ids(engine) == ["e1", "e7"]


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        ("inf", "manual_adjustment needs a numeric 'points' property, got 'inf'"),
        ("nan", "manual_adjustment needs a numeric 'points' property, got 'nan'"),
        ("1e400", "points must be a finite number, got inf"),
        ("-1e999", "points must be a finite number, got -inf"),
    ],
)
def test_a_manual_adjustment_with_non_finite_points_is_rejected(
    engine: Engine, tmp_path: Path, points: str, reason: str
) -> None:
    _leads(engine, tmp_path, "L1")
    path = tmp_path / "adjust.csv"
    path.write_text(
        "event_id,lead_id,type,occurred_at,points,reason\n"
        f"a1,L1,manual_adjustment,2026-11-01T10:00:00Z,{points},hostile\n"
        "a2,L1,manual_adjustment,2026-11-01T10:00:00Z,5,fine\n"
    )
    report = ingest_events(engine, path, event_types=TYPES)
    assert [(r.line, r.field, r.reason) for r in report.rejects] == [(2, "properties", reason)]
    with engine.connect() as conn:
        stored = conn.execute(select(Event.event_id, Event.points)).all()
    assert [(e, p) for e, p in stored] == [("a2", 5.0)] and all(math.isfinite(p) for _, p in stored)


def test_a_semicolon_file_is_read_with_its_delimiter(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("lead_id;email;company\nL1;a@example.com;Acme, Inc.\nL2;b@example.com;Beta\n")
    report = ingest_leads(engine, path)
    assert (report.read, report.inserted, report.rejected) == (2, 2, 0)
    with engine.connect() as conn:
        assert conn.execute(select(Lead.lead_id, Lead.company).order_by(Lead.lead_id)).all() == [
            ("L1", "Acme, Inc."),
            ("L2", "Beta"),
        ]


def test_an_empty_file_and_repeated_ids_are_said_in_the_summary(engine: Engine, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert ingest_leads(engine, empty).notes == ["the file is empty (no data rows)"]
    header_only = tmp_path / "header.csv"
    header_only.write_text("lead_id,email\n")
    assert ingest_leads(engine, header_only).summary().endswith("; the file is empty (no data rows)")

    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,email\nL1,a@example.com\nL2,b@example.com\nL1,c@example.com\n")
    report = ingest_leads(engine, leads, chunk_size=2)  # the repeat is in another chunk
    assert report.notes == ["1 row(s) repeat a lead_id seen earlier in the file (the last one wins)"]
    events = tmp_path / "events.csv"
    events.write_text(HEADER + _row(1) + _row(2) + _row(1) + _row(1))
    report = ingest_events(engine, events, event_types=TYPES)
    assert report.notes == [
        "2 row(s) repeat a event_id seen earlier in the file (events are immutable: the first one is kept)"
    ]


NUL = "contains a NUL character (\\x00), which the database cannot store"


@pytest.mark.parametrize("row_by_row", [False, True])
def test_a_lead_with_a_nul_in_a_field_or_attribute_is_rejected_on_both_paths(
    engine: Engine, tmp_path: Path, row_by_row: bool
) -> None:
    """PostgreSQL text holds no NUL: the row is refused on every database, naming the column."""
    path = tmp_path / "leads.csv"
    path.write_text(
        "lead_id,email,first_name,plan\n"
        "L1,a@example.com,Ann,gold\n"
        "L2,b@example.com,B\x00b,gold\n"
        "L3,c\x00@example.com,Cy,gold\n"
        "L4,d@example.com,Di,go\x00ld\n"
        "L5\x00,e@example.com,Ed,gold\n"
        "L6,f@example.com,Fay,\n"
    )
    report = ingest_leads(engine, path, row_by_row=row_by_row)
    assert [(r.line, r.field, r.reason) for r in report.rejects] == [
        (3, "first_name", NUL),
        (4, "email", NUL),
        (5, "plan", NUL),
        (6, "lead_id", NUL),
    ]
    with engine.connect() as conn:
        assert conn.execute(select(Lead.lead_id).order_by(Lead.lead_id)).scalars().all() == ["L1", "L6"]


def test_json_lines_with_a_nul_in_a_field_a_property_or_a_key_reject_their_lines_only(
    engine: Engine, tmp_path: Path
) -> None:
    _leads(engine, tmp_path, "L1")
    good = {"lead_id": "L1", "type": "page_view", "occurred_at": "2026-11-01T10:00:00Z"}
    lines = [
        {**good, "event_id": "e1", "properties": {"url": "/p"}},
        {**good, "event_id": "e2", "properties": {"url": "/p\u0000"}},
        {**good, "event_id": "e3", "properties": {"tags": ["a", "b\u0000"]}},
        {**good, "event_id": "e4", "properties": {"u\u0000rl": "/p"}},
        {**good, "event_id": "e5", "campaign": "spring\u0000"},
        {**good, "event_id": "e6", "message_id": "<m\u0000@x>"},
        {**good, "event_id": "e7\u0000"},
        {**good, "event_id": "e8", "occurred_at": "2026-11-01T10:00:00Z\u0000"},
        {**good, "event_id": "e9", "properties": '{"url": "/p\\u0000"}'},
        {**good, "event_id": "e10", "ca\u0000mpaign": "spring"},
        {**good, "event_id": "e11", "properties": {"url": "/q"}},
        {**good, "event_id": "e12", "product_line": "crm\u0000"},  # no product lines given: any text but this
        {**good, "event_id": "e13", "lead_id": "L\u00001"},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert "\\u0000" in path.read_text()  # JSON's spelling of a NUL, as a client sends it
    report = ingest_events(engine, path, event_types=TYPES)
    assert [(r.line, r.field, r.reason) for r in report.rejects] == [
        (2, "properties", NUL),
        (3, "properties", NUL),
        (4, "properties", NUL),
        (5, "campaign", NUL),
        (6, "message_id", NUL),
        (7, "event_id", NUL),
        (8, "occurred_at", NUL),
        (9, "properties", NUL),
        (10, "ca\\x00mpaign", NUL),
        (12, "product_line", NUL),
        (13, "lead_id", NUL),
    ]
    assert _event_ids(engine) == ["e1", "e11"]
