"""Ingestion: validation with exact rejects, idempotent re-ingest, lead updates, machine activity."""

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import SQLModel

from stages.spec import BUILTIN_EVENT_TYPES
from store.db import make_engine
from store.ingest import (
    IngestReport,
    Reject,
    ingest_events,
    ingest_leads,
    skeleton,
    write_rejects_csv,
)
from store.tables import Event, IngestReject, Lead
from tests.store.samples import (
    EVENT_REJECTS,
    GOOD_EVENTS,
    LEAD_REJECTS,
    PRODUCT_LINES,
    Loaded,
    lead_keys,
    write,
)

TYPES = set(BUILTIN_EVENT_TYPES)


def table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in SQLModel.metadata.sorted_tables
        }


def rejects_by_line(report: IngestReport) -> dict[int, tuple[str | None, str]]:
    return {r.line: (r.field, r.reason) for r in report.rejects}


def stored_leads(engine: Engine) -> dict[str, Lead]:
    with engine.connect() as conn:
        return {row.lead_id: row for row in conn.execute(select(Lead.__table__)).all()}  # type: ignore[arg-type]


def stored_events(engine: Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {row.event_id: row._asdict() for row in conn.execute(select(Event.__table__)).all()}  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ leads


def test_leads_good_rows_stored_bad_rows_rejected_with_line_field_reason(loaded: Loaded) -> None:
    report = loaded.leads
    assert (report.kind, report.source) == ("leads", str(loaded.leads_path))
    assert (report.read, report.accepted, report.inserted, report.updated, report.rejected) == (9, 3, 3, 0, 6)
    assert rejects_by_line(report) == LEAD_REJECTS
    assert str(next(r for r in report.rejects if r.line == 5)) == (
        "leads.csv line 5, field 'email': value is not a valid email address: 'not-an-email' (expected name@domain.tld)"
    )
    assert str(next(r for r in report.rejects if r.line == 11)) == (
        "leads.csv line 11: row has 14 values but the header has 11 columns"
    )
    assert next(r for r in report.rejects if r.line == 5).raw["email"] == "not-an-email"

    leads = stored_leads(loaded.engine)
    assert sorted(leads) == ["L1", "L2", "L3"]
    alice = leads["L1"]
    assert alice.email == "alice@example.com"  # stripped and lower-cased
    assert (alice.first_name, alice.last_name, alice.company) == ("Alice", "Smith", "Acme")
    assert (alice.email_opt_in, alice.ads_opt_in) == (True, False)
    # Unknown columns are attributes, kept as text; blanks are dropped.
    assert alice.attributes == {"job_title": "CTO", "company_size": "250", "product_interest": "crm;analytics"}
    assert leads["L2"].attributes == {"job_title": "Engineer", "product_interest": "crm"}
    assert leads["L2"].last_name is None
    assert leads["L3"].unsubscribed_at == datetime(2024, 2, 1, 10, tzinfo=UTC)
    assert leads["L3"].attributes == {}
    assert alice.created_at is not None and alice.created_at.tzinfo is not None


def test_leads_interests_come_from_product_interest(loaded: Loaded) -> None:
    keys = loaded.keys
    interests = {(key, line) for key, line, _ in loaded.leads.interests}
    assert interests == {(keys["L1"], "crm"), (keys["L1"], "analytics"), (keys["L2"], "crm")}
    created = stored_leads(loaded.engine)["L1"].created_at
    assert {when for key, _, when in loaded.leads.interests if key == keys["L1"]} == {created}


def test_rejects_are_stored_once(loaded: Loaded) -> None:
    with loaded.engine.connect() as conn:
        rows = conn.execute(select(IngestReject.__table__)).all()  # type: ignore[arg-type]
    stored = {(r.kind, r.line): (r.field, r.reason) for r in rows}
    assert {line: v for (kind, line), v in stored.items() if kind == "leads"} == LEAD_REJECTS
    events = {line: v for (kind, line), v in stored.items() if kind == "events"}
    assert events.keys() == EVENT_REJECTS.keys()
    assert {r.source for r in rows} == {str(loaded.leads_path), str(loaded.events_path)}
    assert all(len(r.row_hash) == 64 for r in rows)
    raw = next(r.raw for r in rows if r.kind == "events" and r.line == 11)
    assert raw["lead_id"] == "L99"


def test_reingest_changes_nothing(loaded: Loaded) -> None:
    before = table_counts(loaded.engine)
    keys = loaded.keys
    again_leads = ingest_leads(loaded.engine, loaded.leads_path, product_lines=PRODUCT_LINES)
    again_events = ingest_events(loaded.engine, loaded.events_path, event_types=TYPES, product_lines=PRODUCT_LINES)
    assert (again_leads.inserted, again_leads.updated, again_leads.accepted, again_leads.rejected) == (0, 0, 3, 6)
    assert (again_events.inserted, again_events.updated, again_events.accepted, again_events.rejected) == (0, 0, 9, 9)
    assert rejects_by_line(again_leads) == rejects_by_line(loaded.leads)
    assert table_counts(loaded.engine) == before
    assert lead_keys(loaded.engine) == keys
    assert sorted(again_events.interests) == sorted(loaded.events.interests)


def test_lead_update_changes_only_what_the_file_says(loaded: Loaded, tmp_path: Path) -> None:
    engine, keys = loaded.engine, loaded.keys
    # CSV: a changed cell updates the lead; the other leads are untouched.
    changed = loaded.leads_path.read_text().replace("L2,bob@example.com,Bob,,Beta", "L2,bob@example.com,Bob,,Gamma")
    path = write(tmp_path, "leads-v2.csv", changed)
    report = ingest_leads(engine, path, product_lines=PRODUCT_LINES)
    assert (report.inserted, report.updated) == (0, 1)
    leads = stored_leads(engine)
    assert leads["L2"].company == "Gamma"
    assert leads["L2"].updated_at is not None and leads["L2"].updated_at >= leads["L2"].created_at
    assert ingest_leads(engine, path, product_lines=PRODUCT_LINES).updated == 0

    # JSON Lines: keys present set (blank clears), keys absent keep; suppression times are sticky.
    jsonl = write(
        tmp_path,
        "patch.jsonl",
        '{"lead_id": "L2", "phone": "+1 555 0100", "job_title": "", "industry": "retail", "ads_opt_in": "yes"}\n'
        '{"lead_id": "L3", "unsubscribed_at": null, "first_name": "Cyrus"}\n'
        '{"lead_id": "L9", "email": "new@example.com", "attributes": {"tier": 2}}\n',
    )
    report = ingest_leads(engine, jsonl)
    assert (report.read, report.inserted, report.updated, report.rejected) == (3, 1, 2, 0)
    leads = stored_leads(engine)
    bob = leads["L2"]
    assert (bob.phone, bob.company, bob.email, bob.ads_opt_in, bob.email_opt_in) == (
        "+1 555 0100",
        "Gamma",
        "bob@example.com",
        True,
        True,
    )
    assert bob.attributes == {"product_interest": "crm", "industry": "retail"}
    assert leads["L3"].first_name == "Cyrus"
    assert leads["L3"].unsubscribed_at == datetime(2024, 2, 1, 10, tzinfo=UTC)
    assert leads["L9"].attributes == {"tier": 2}
    assert {k: v for k, v in lead_keys(engine).items() if k != "L9"} == keys
    assert ingest_leads(engine, jsonl).updated == 0


def test_blank_flag_clears_and_repeated_lead_keeps_last_row(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dupes.csv",
        "lead_id,email_opt_in,company\nA,yes,First\nA,yes,Second\nB,1,X\n",
    )
    report = ingest_leads(engine, path)
    assert (report.accepted, report.inserted) == (3, 2)
    assert stored_leads(engine)["A"].company == "Second"
    cleared = write(tmp_path, "cleared.csv", "lead_id,email_opt_in\nB,\n")
    assert ingest_leads(engine, cleared).updated == 1
    assert stored_leads(engine)["B"].email_opt_in is False


def test_progress_is_reported_after_each_chunk(engine: Engine, tmp_path: Path) -> None:
    rows = "".join(f"L{n},{'bad' if n == 3 else 'yes'}\n" for n in range(5))
    path = write(tmp_path, "five.csv", "lead_id,email_opt_in\n" + rows)
    seen: list[tuple[int, int]] = []

    def progress(done: int) -> None:
        seen.append((done, len(stored_leads(engine))))  # called once the chunk is stored

    report = ingest_leads(engine, path, chunk_size=2, progress=progress)
    assert (report.read, report.inserted, report.rejected) == (5, 4, 1)
    assert seen == [(2, 2), (4, 3), (5, 4)]


# ----------------------------------------------------------------------------------------------- events


def test_events_good_rows_stored_bad_rows_rejected(loaded: Loaded) -> None:
    report = loaded.events
    assert (report.read, report.accepted, report.inserted, report.updated, report.rejected) == (18, 9, 9, 0, 9)
    found = rejects_by_line(report)
    assert found.keys() == EVENT_REJECTS.keys()
    for line, (field, reason) in EVENT_REJECTS.items():
        assert found[line][0] == field, line
        assert found[line][1].startswith(reason), (line, found[line][1])
    assert str(next(r for r in report.rejects if r.line == 11)) == (
        "events.jsonl line 11, field 'lead_id': unknown lead_id 'L99' (ingest leads first)"
    )
    events = stored_events(loaded.engine)
    assert sorted(events) == sorted(GOOD_EVENTS)
    keys = loaded.keys
    e3 = events["e3"]
    assert e3["lead_key"] == keys["L1"]
    assert e3["occurred_at"] == datetime(2024, 3, 1, 10, 0, 1, tzinfo=UTC)  # +01:00 stored as UTC
    assert e3["message_id"] == "m1"  # promoted from the properties
    assert events["e4"]["message_id"] == "m2"  # given as a column
    assert events["e1"]["product_line"] == "crm" and events["e16"]["product_line"] is None
    assert events["e14"]["properties"] == {"points": -5, "reason": "met at the fair", "author": "ann"}
    assert events["e1"]["ingested_at"] is not None


def test_machine_activity(loaded: Loaded) -> None:
    machine = {event_id: row["machine"] for event_id, row in stored_events(loaded.engine).items()}
    assert machine["e3"] is True  # open 1 s after the delivery of the same message
    assert machine["e5"] is False  # open an hour later
    assert machine["e6"] is True  # Gmail's image proxy
    assert machine["e17"] is False  # explicit flag wins over the proxy agent
    assert not any(machine[e] for e in ("e1", "e2", "e4", "e14", "e16"))


def test_machine_window_uses_deliveries_already_in_the_store(loaded: Loaded, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "later.jsonl",
        '{"event_id":"x1","lead_id":"L2","type":"email_click","occurred_at":"2024-03-01T11:00:01.5Z",'
        '"message_id":"m2"}\n'
        '{"event_id":"x2","lead_id":"L2","type":"email_open","occurred_at":"2024-03-01T11:00:03Z",'
        '"message_id":"m2"}\n'
        '{"event_id":"x3","lead_id":"L2","type":"email_open","occurred_at":"2024-03-01T11:00:02Z",'
        '"message_id":"m2","machine":"no"}\n',
    )
    report = ingest_events(loaded.engine, path, event_types=TYPES)
    assert report.inserted == 3
    events = stored_events(loaded.engine)
    assert (events["x1"]["machine"], events["x2"]["machine"], events["x3"]["machine"]) == (True, False, False)
    # A wider window catches the 3 s open (on a fresh id: stored events never change).
    path2 = write(tmp_path, "later2.jsonl", path.read_text().replace('"x2"', '"x4"'))
    ingest_events(loaded.engine, path2, event_types=TYPES, machine_window_seconds=5)
    assert stored_events(loaded.engine)["x4"]["machine"] is True


def test_events_csv_extras_numbers_and_late_deliveries(engine: Engine, tmp_path: Path) -> None:
    ingest_leads(engine, write(tmp_path, "l.csv", "lead_id\nL1\nL2\n"))
    path = write(
        tmp_path,
        "events.csv",
        "event_id,lead_id,type,occurred_at,product_line,message_id,properties,duration_s,zip,campaign\n"
        "c1,L1,email_open,2024-04-01T10:00:01Z,,mx,,,,spring\n"
        'c2,L1,page_view,2024-04-01T10:05:00Z,crm,,"{""url"": ""/a""}",42,0123,spring\n'
        "c3,L1,email_delivered,2024-04-01T10:00:00Z,,mx,,,,\n"
        'c4,L2,manual_adjustment,2024-04-02T00:00:00Z,,,"{""points"": ""7"", ""reason"": ""call""}",,,\n'
        'c5,L2,page_view,2024-04-02T00:00:00Z,,,"[1]",,,\n'
        "c6,L2,meeting,2024-04-02T00:00:00Z,,,,1.5,,\n",
    )
    # Chunks of two rows: the open (chunk 1) meets its delivery in chunk 2 and is flagged then.
    report = ingest_events(engine, path, event_types=TYPES | {"meeting"}, product_lines=PRODUCT_LINES, chunk_size=2)
    assert (report.read, report.accepted, report.inserted, report.updated, report.rejected) == (6, 5, 5, 1, 1)
    assert rejects_by_line(report) == {6: ("properties", "must be a JSON object, got list")}
    events = stored_events(engine)
    assert events["c1"]["machine"] is True
    assert events["c1"]["properties"] == {"campaign": "spring"}
    assert events["c2"]["properties"] == {"url": "/a", "duration_s": 42, "zip": "0123", "campaign": "spring"}
    assert events["c4"]["properties"] == {"points": 7, "reason": "call"}
    assert events["c6"]["properties"] == {"duration_s": 1.5}
    again = ingest_events(engine, path, event_types=TYPES | {"meeting"}, product_lines=PRODUCT_LINES, chunk_size=2)
    assert (again.inserted, again.updated) == (0, 0)


def test_stored_ids_the_probe_does_not_sample_are_skipped(engine: Engine, tmp_path: Path) -> None:
    """A chunk's stored ids are probed on a sample first; ids it misses must still be skipped, not doubled
    nor fail the load (PostgreSQL's plain ``COPY`` is refused by the unique index and the chunk merged)."""
    ingest_leads(engine, write(tmp_path, "l.csv", "lead_id\nL1\nL2\n"))
    header = "event_id,lead_id,type,occurred_at,properties\n"
    rows = [
        f'e{n},L{1 + n % 2},page_view,2024-04-01T10:{n // 60:02d}:{n % 60:02d}Z,"{{""n"": {n}}}"\n' for n in range(500)
    ]
    first = ingest_events(engine, write(tmp_path, "some.csv", header + rows[3] + rows[78]), event_types=TYPES)
    assert first.inserted == 2
    before = stored_events(engine)
    report = ingest_events(engine, write(tmp_path, "all.csv", header + "".join(rows)), event_types=TYPES)
    assert (report.read, report.accepted, report.inserted, report.rejected) == (500, 500, 498, 0)
    events = stored_events(engine)
    assert len(events) == 500 and events["e3"] == before["e3"] and events["e78"] == before["e78"]
    assert events["e499"]["properties"] == {"n": 499}


def test_a_sqlite_file_load_commits_its_chunks_by_rows_or_by_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's chunks go into SQLite several to a transaction, but one kept open
    ``FILE_TRANSACTION_SECONDS`` commits after its chunk: other writers wait for it under a busy timeout."""
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    ingest_leads(engine, write(tmp_path, "l.csv", "lead_id\nL1\nL2\n"))
    header = "event_id,lead_id,type,occurred_at\n"
    rows = "".join(f"e{n},L{1 + n % 2},page_view,2024-04-01T10:00:{n:02d}Z\n" for n in range(50))
    path = write(tmp_path, "e.csv", header + rows)

    def visible(seconds: float) -> list[tuple[int, int]]:
        """(rows read, rows another connection sees) after each chunk, with transactions held ``seconds``."""
        with engine.begin() as conn:
            conn.execute(Event.__table__.delete())
        monkeypatch.setattr(skeleton, "FILE_TRANSACTION_SECONDS", seconds)
        seen: list[tuple[int, int]] = []
        report = ingest_events(
            engine,
            path,
            event_types=TYPES,
            chunk_size=20,
            transaction_rows=1_000,
            progress=lambda done: seen.append((done, len(stored_events(engine)))),
        )
        assert report.inserted == 50
        return seen

    assert visible(3600.0) == [(10, 0), (20, 0), (40, 0), (50, 0)]  # 1,000 rows a transaction: one commit
    assert visible(0.0) == [(10, 10), (20, 20), (40, 40), (50, 50)]  # held too long: each chunk commits
    engine.dispose()


def test_event_interests_keep_first_time(loaded: Loaded) -> None:
    keys = loaded.keys
    assert sorted(loaded.events.interests) == sorted(
        [
            (keys["L1"], "crm", datetime(2024, 3, 1, 10, tzinfo=UTC)),
            (keys["L3"], "analytics", datetime(2024, 3, 3, 10, tzinfo=UTC)),
        ]
    )


def test_write_rejects_csv(loaded: Loaded, tmp_path: Path) -> None:
    out = write_rejects_csv(loaded.events, tmp_path / "rejects.csv")
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["line"]) for r in rows] == sorted(EVENT_REJECTS)
    assert rows[0].keys() == {"source", "line", "field", "reason", "raw"}
    assert json.loads(next(r for r in rows if r["line"] == "11")["raw"])["lead_id"] == "L99"


def test_unsupported_suffix_is_an_error(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", "lead_id\nA\n")
    try:
        ingest_leads(engine, path)
    except ValueError as exc:
        assert "unsupported file type '.txt'" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_reject_str_without_source() -> None:
    assert str(Reject(3, None, "bad", {})) == "line 3: bad"
