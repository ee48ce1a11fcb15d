"""Bulk writes: the counts they return are exact on SQLite and PostgreSQL."""

from datetime import UTC, datetime

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from store.bulk import insert_ignore, upsert
from store.tables import Event, IngestReject, Lead

REJECTS = IngestReject.__table__
LEADS = Lead.__table__
EVENTS = Event.__table__


def reject_rows(lines: range) -> list[dict]:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        {
            "kind": "k",
            "source": "s",
            "line": i,
            "field": None,
            "reason": "r",
            "row_hash": "h",
            "raw": {"line": i},
            "rejected_at": now,
        }
        for i in lines
    ]


def count(engine: Engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_insert_ignore_counts_only_new_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        assert insert_ignore(conn, REJECTS, reject_rows(range(10)), chunk=3) == 10
        # Stored duplicates, duplicates inside the batch and new rows, across chunk borders.
        rows = reject_rows(range(8, 14)) + reject_rows(range(12, 15))
        assert insert_ignore(conn, REJECTS, rows, chunk=4) == 5
        assert insert_ignore(conn, REJECTS, [], chunk=4) == 0
    assert count(engine, REJECTS) == 15


def test_insert_ignore_any_unique_index_counts_as_conflict(engine: Engine) -> None:
    at = datetime(2024, 1, 1, tzinfo=UTC)
    row = {
        "lead_key": 1,
        "occurred_at": at,
        "event_id": "e1",
        "type": "page_view",
        "product_line": None,
        "machine": False,
        "message_id": None,
        "properties": {},
        "ingested_at": at,
    }
    with engine.begin() as conn:
        assert insert_ignore(conn, EVENTS, [row]) == 1
        # Same event_id with another primary key (lead, time): the unique event_id index stops it.
        assert insert_ignore(conn, EVENTS, [{**row, "lead_key": 2, "occurred_at": datetime.now(UTC)}]) == 0
    assert count(engine, EVENTS) == 1


def test_insert_ignore_accepts_a_session(engine: Engine) -> None:
    with Session(engine) as session:
        assert insert_ignore(session, REJECTS, reject_rows(range(3))) == 3
        session.commit()
    assert count(engine, REJECTS) == 3


def test_upsert_is_idempotent_and_counts_changes(engine: Engine) -> None:
    rows = [{"lead_id": f"L{i}", "email": None, "attributes": {"n": i}} for i in range(5)]
    cols = ["email", "attributes"]
    with engine.begin() as conn:
        assert upsert(conn, LEADS, rows, ["lead_id"], cols, chunk=2) == 5
        assert upsert(conn, LEADS, rows, ["lead_id"], cols, chunk=2) == 0
        rows[1]["attributes"] = {"n": 99}  # JSON compared by value (jsonb on PostgreSQL)
        rows[2]["email"] = "c@example.com"
        new = {"lead_id": "L9", "email": None, "attributes": {}}
        repeated = {"lead_id": "L3", "email": "d@example.com", "attributes": {"n": 3}}
        assert upsert(conn, LEADS, [*rows, new, rows[3], repeated], ["lead_id"], cols, chunk=3) == 4
        assert upsert(conn, LEADS, [*rows, new, repeated], ["lead_id"], cols) == 0
        keys = dict(conn.execute(select(Lead.lead_id, Lead.key)).all())  # type: ignore[call-overload]
        stored = {r.lead_id: r for r in conn.execute(select(LEADS)).all()}
    assert stored["L1"].attributes == {"n": 99}
    assert stored["L2"].email == "c@example.com"
    assert stored["L3"].email == "d@example.com"  # the last row of a repeated key wins
    assert len(keys) == 6


def test_upsert_compare_cols_ignore_bookkeeping(engine: Engine) -> None:
    first = datetime(2024, 1, 1, tzinfo=UTC)
    row = {"lead_id": "A", "company": "X", "attributes": {}, "updated_at": first}
    cols = ["company", "updated_at"]
    with engine.begin() as conn:
        assert upsert(conn, LEADS, [row], ["lead_id"], cols, compare_cols=["company"]) == 1
        later = {**row, "updated_at": datetime(2025, 1, 1, tzinfo=UTC)}
        assert upsert(conn, LEADS, [later], ["lead_id"], cols, compare_cols=["company"]) == 0
        assert conn.execute(select(Lead.updated_at)).scalar_one() == first
        changed = {**later, "company": "Y"}
        assert upsert(conn, LEADS, [changed], ["lead_id"], cols, compare_cols=["company"]) == 1
        assert conn.execute(select(Lead.updated_at)).scalar_one() == datetime(2025, 1, 1, tzinfo=UTC)
