"""PostgreSQL's planner statistics brought up to date after a large write, and during a bulk load."""

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from store.db import refresh_statistics
from store.ingest import ingest_leads


def _insert(engine: Engine, first: int, last: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO scratch SELECT g FROM generate_series(CAST(:a AS integer), CAST(:b AS integer)) AS g"),
            {"a": first, "b": last},
        )
        conn.execute(text("SELECT pg_stat_force_next_flush()"))  # the counters reach the shared stats now


def test_analyzes_the_tables_a_step_grew_and_nothing_on_a_quiet_day(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        assert refresh_statistics(engine) == []  # SQLite plans without statistics
        pytest.skip("statistics are a PostgreSQL matter")
    with engine.begin() as conn:
        # Autovacuum must not analyze it first: the test decides when statistics are refreshed.
        conn.execute(text("CREATE TABLE scratch (id integer) WITH (autovacuum_enabled = false)"))
    refresh_statistics(engine)  # whatever the schema's creation left stale
    _insert(engine, 1, 1000)

    assert refresh_statistics(engine) == ["scratch"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'scratch'")).scalar_one() == 1000
    assert refresh_statistics(engine) == []  # nothing changed since

    _insert(engine, 1001, 1100)  # 100 rows: under 50 + 10 % of 1,000
    assert refresh_statistics(engine) == []
    _insert(engine, 1101, 1200)  # 200 changed since the last analyze: over 50 + 10 % of 1,200
    assert refresh_statistics(engine) == ["scratch"]


def test_a_bulk_load_analyzes_the_table_it_grows_as_it_goes(engine: Engine, tmp_path: Path) -> None:
    """A file stored chunk by chunk: each chunk's look-ups are planned with the grown table's statistics."""
    if engine.dialect.name != "postgresql":
        pytest.skip("statistics are a PostgreSQL matter")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE leads SET (autovacuum_enabled = false)"))  # only the load analyzes
    path = tmp_path / "leads.csv"
    path.write_text("lead_id\n" + "".join(f"L{i:04d}\n" for i in range(1000)))

    report = ingest_leads(engine, path, chunk_size=100)

    assert report.inserted == 1000
    # 100 rows a chunk, analyzed once more than 50 rows + the table at its last ANALYZE were added: at
    # 100, 300 and 700 rows (1,000 is within 50 + 700 of the one before).
    rows = text("SELECT reltuples FROM pg_class WHERE oid = CAST('leads' AS regclass)")
    with engine.connect() as conn:
        assert conn.execute(rows).scalar_one() == 700
