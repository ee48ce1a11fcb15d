"""Indexes a first bulk load leaves out: the console's search indexes on leads, and on PostgreSQL the events'
primary key. Dropped during the load, built after it, also after a failed load, and built first by the next
load when a killed one left them dropped."""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

import store.bulk_indexes
from store.bulk_indexes import build_deferred_indexes, indexes_deferred, missing_deferred_indexes
from store.ingest import ingest_leads

SEARCH = {f"ix_leads_{field}_lower" for field in ("email", "first_name", "last_name", "company")}


def _present(engine: Engine) -> set[str]:
    return SEARCH - set(missing_deferred_indexes(engine, "leads"))


def _file(tmp_path: Path, rows: int, first: int = 0) -> Path:
    path = tmp_path / f"leads{first}.csv"
    lines = [f"L{n},l{n}@acme.com,Ann{n},Lee,Acme {n}\n" for n in range(first, first + rows)]
    path.write_text("lead_id,email,first_name,last_name,company\n" + "".join(lines))
    return path


def test_a_first_bulk_load_drops_them_while_it_runs_and_builds_them_after(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store.bulk_indexes, "BULK_BYTES", 1_000)
    big, small = _file(tmp_path, 100), tmp_path / "small.csv"
    small.write_text("lead_id,email\nL9,l9@acme.com\n")
    with indexes_deferred(engine, "leads", [small]) as deferred:  # below the size: kept
        assert not deferred and _present(engine) == SEARCH
    with indexes_deferred(engine, "leads", [big]) as deferred:
        assert deferred and _present(engine) == set()
    assert _present(engine) == SEARCH

    with pytest.raises(RuntimeError), indexes_deferred(engine, "leads", [big]):
        raise RuntimeError("the load failed")
    assert _present(engine) == SEARCH  # built again all the same

    assert ingest_leads(engine, big).inserted == 100
    with indexes_deferred(engine, "leads", [big]) as deferred:  # leads are stored: not a first load
        assert not deferred and _present(engine) == SEARCH
    search = "SELECT lead_id FROM leads WHERE lower(company) >= 'acme 42' AND lower(company) < 'acme 43'"
    with engine.connect() as conn:  # the rebuilt index serves the console's prefix search
        assert sorted(conn.execute(text(search)).scalars()) == ["L42"]
        if engine.dialect.name == "sqlite":
            plan = " ".join(row[3] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {search}")))
        else:  # a small table is cheaper to scan: ask whether the index can answer at all
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(row[0] for row in conn.execute(text(f"EXPLAIN {search}")))
    assert "ix_leads_company_lower" in plan


def test_the_next_load_builds_what_a_killed_one_left_dropped(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store.bulk_indexes, "BULK_BYTES", 1_000)
    with engine.begin() as conn:  # as a first bulk load killed mid-file leaves them
        for name in sorted(SEARCH):
            conn.execute(text(f"DROP INDEX {name}"))
        if engine.dialect.name == "postgresql":  # and a first bulk load of events its primary key
            conn.execute(text("ALTER TABLE events DROP CONSTRAINT events_pkey"))
    dropped = SEARCH | ({"events_pkey"} if engine.dialect.name == "postgresql" else set())
    assert set(missing_deferred_indexes(engine)) == dropped
    assert ingest_leads(engine, _file(tmp_path, 3)).inserted == 3  # a load of either table builds both tables'
    assert _present(engine) == SEARCH and missing_deferred_indexes(engine) == []
    assert inspect(engine).get_pk_constraint("events")["constrained_columns"] == ["lead_key", "occurred_at", "event_id"]


def test_two_loads_building_the_dropped_primary_key_at_once_both_succeed(engine: Engine) -> None:
    """Adding a primary key twice is an error, not a no-op: the second builder must find it built."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's events are clustered on their key: never dropped")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE events DROP CONSTRAINT events_pkey"))
    waiting = "SELECT count(*) FROM pg_locks WHERE relation = 'events'::regclass AND NOT granted"
    with engine.connect() as holder, ThreadPoolExecutor(2) as pool:
        holder.execute(text("LOCK TABLE events IN ACCESS SHARE MODE"))  # both builders wait behind it
        builds = [pool.submit(build_deferred_indexes, engine) for _ in range(2)]
        with engine.connect() as conn:
            while conn.execute(text(waiting)).scalar_one() < 2 and not any(build.done() for build in builds):
                time.sleep(0.01)
        holder.rollback()
        for build in builds:
            build.result()
    assert missing_deferred_indexes(engine) == []
