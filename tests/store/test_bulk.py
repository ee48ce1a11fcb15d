"""Bulk writes: the counts they return are exact on SQLite and PostgreSQL."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlmodel import Session

from store.bulk import insert_ignore, insert_rows, update_rows, upsert
from store.ingest.lookup import lookup
from store.scores import SNAPSHOT_COLUMNS
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


ODD = 'tab\there, "quoted", back\\slash\nnew line, \\N, é'
SNAPSHOTS = [
    (
        1,
        10,
        "crm",
        ODD,
        "run-1",
        0,
        1_700_000_000_000_001,
        0.1 + 0.2,
        "hot",
        None,
        '[{"rule": "a\\tb", "points": 1.5}]',
    ),
    (2, 11, "crm", "", "run-1", 0, -5, -1e-300, None, "mql", "[]"),
]
NEW_SNAPSHOT = (3, 12, "crm", "new", "run-1", 1, 7, 12345.678901234567, "cold", None, "[]")


def stored_snapshots(engine: Engine) -> list[tuple]:
    columns = ", ".join("CAST(breakdown AS TEXT)" if c == "breakdown" else c for c in SNAPSHOT_COLUMNS)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(f"SELECT {columns} FROM score_snapshots ORDER BY journey_id"))]


def test_insert_rows_and_update_rows_store_the_exact_values(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_rows(conn, "score_snapshots", SNAPSHOT_COLUMNS, SNAPSHOTS, on_conflict="")
        # The same shape again in the same transaction, without a conflict clause: a row staged by the
        # first call and applied again would violate the unique index.
        insert_rows(conn, "score_snapshots", SNAPSHOT_COLUMNS, [NEW_SNAPSHOT], on_conflict="")
        insert_rows(conn, "score_snapshots", SNAPSHOT_COLUMNS, [], on_conflict="")
    assert stored_snapshots(engine) == [*SNAPSHOTS, NEW_SNAPSHOT]
    with engine.begin() as conn:
        insert_rows(conn, "score_snapshots", SNAPSHOT_COLUMNS, [SNAPSHOTS[0]], "ON CONFLICT DO NOTHING")
        update_rows(conn, "score_snapshots", ("score", "band", "stage"), "journey_id", [(2.5, None, ODD, 2)])
        update_rows(conn, "score_snapshots", ("score", "band", "stage"), "journey_id", [(-0.0, "warm", "x", 3)])
    expected = [SNAPSHOTS[0], (*SNAPSHOTS[1][:3], ODD, *SNAPSHOTS[1][4:7], 2.5, None, *SNAPSHOTS[1][9:])]
    assert stored_snapshots(engine) == [
        *expected,
        (*NEW_SNAPSHOT[:3], "x", *NEW_SNAPSHOT[4:7], -0.0, "warm", None, "[]"),
    ]


def test_insert_rows_upserts_and_leaves_nothing_staged_after_a_rollback(engine: Engine) -> None:
    columns = ("journey_id", "trigger", "armed", "as_of")
    upsert_arms = "ON CONFLICT (journey_id, trigger) DO UPDATE SET armed = excluded.armed, as_of = excluded.as_of"
    with engine.begin() as conn:
        insert_rows(conn, "trigger_arms", columns, [(1, "t", True, 5), (2, "t", False, 6)], upsert_arms)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        insert_rows(conn, "trigger_arms", columns, [(3, "t", True, 7)], upsert_arms)
        raise RuntimeError("the partition failed")
    with engine.begin() as conn:  # the connection is reused: what the failed transaction staged is gone
        insert_rows(conn, "trigger_arms", columns, [(2, "t", True, 8), (4, "u", False, 9)], upsert_arms)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT journey_id, trigger, armed, as_of FROM trigger_arms ORDER BY journey_id"))
        assert [tuple(row) for row in rows] == [(1, "t", True, 5), (2, "t", True, 8), (4, "u", False, 9)]


def test_lookup_finds_ids_an_array_literal_must_escape(engine: Engine) -> None:
    """PostgreSQL's look-ups send the wanted ids as one array text: quotes, backslashes, braces, commas,
    blanks and the word NULL are ids like any other."""
    odd = ['a"b', "c\\d", 'e\\"f', "g,h", "{i}", "NULL", " j ", "k\tl", "é"]
    rows = reject_rows(range(len(odd)))
    for row, source in zip(rows, odd, strict=True):
        row["source"] = source
    with engine.begin() as conn:
        insert_ignore(conn, REJECTS, rows)
        found = lookup(conn, REJECTS.c.source, [*odd, "absent"], [REJECTS.c.source, REJECTS.c.line])
        assert sorted(found) == sorted((source, line) for line, source in enumerate(odd))
        many = [*odd, *(f"absent {n}" for n in range(10_000))]  # a long list: its array text is Polars'
        assert sorted(lookup(conn, REJECTS.c.source, many, [REJECTS.c.source, REJECTS.c.line])) == sorted(found)
        assert sorted(lookup(conn, REJECTS.c.line, [2, 4, 99], [REJECTS.c.line])) == [(2,), (4,)]  # an integer column
        assert lookup(conn, REJECTS.c.source, [], [REJECTS.c.source]) == []


def test_a_postgresql_lookup_is_planned_with_its_list_as_a_constant_array(engine: Engine) -> None:
    """The wanted ids reach the planner as an array constant, which ``= ANY`` hashes: a text parameter
    converted to an array at run time made a plan that scanned 20M events searching a 50,000-id list
    for each row (minutes for one look-up of the machine-activity detector)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's planner")

    def explained(_conn, _cursor, statement, parameters, _context, _many):  # type: ignore[no-untyped-def]
        return f"EXPLAIN (VERBOSE) {statement}", parameters

    with engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", explained, retval=True)
        plan = "\n".join(row[0] for row in lookup(conn, EVENTS.c.message_id, ["m1", 'm"2'], [EVENTS.c.message_id]))
    assert """ANY ('{m1,"m\\"2"}'::text[])""" in plan, plan
    assert "::cstring" not in plan, plan  # the text read as an array by each execution
