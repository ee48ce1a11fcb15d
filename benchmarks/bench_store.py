"""The scoring benchmark's store between measurements (``benchmarks/score.py``): the SQLite store kept as
ingested, put back before each measurement so its first run is a true first run; where there is no such
copy (PostgreSQL, an older workdir), the previous measurement's scores and day of data removed."""

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from sqlalchemy import Engine, inspect, text

PREPARED = "prepared.db"  # the SQLite store as ingested, never scored


def keep_prepared(workdir: Path) -> None:
    """Copy the freshly ingested SQLite store (checkpointed: one file) aside, so every measurement starts
    from a store no run has touched: journeys in their first stage, no firings, arms or milestones."""
    with closing(sqlite3.connect(workdir / "bench.db")) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(workdir / "bench.db", workdir / PREPARED)


def restore_prepared(workdir: Path) -> bool:
    """Put the prepared store back in place of ``bench.db`` (and drop its event cache); False without one."""
    if not (workdir / PREPARED).exists():
        return False
    for leftover in ("bench.db-wal", "bench.db-shm"):
        (workdir / leftover).unlink(missing_ok=True)
    shutil.rmtree(workdir / "bench.db.mirror", ignore_errors=True)
    shutil.copyfile(workdir / PREPARED, workdir / "bench.db")
    return True


def forget_scores(engine: Engine) -> None:
    """Without a prepared copy: remove the day of data and the scores (journeys stay in the stages earlier
    runs moved them to, with their arms and milestones: such a first run moves and alerts nobody)."""
    forget_increment(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE journeys SET score = NULL, band = NULL, qualification = NULL, updated_run_id = NULL"))
        conn.execute(text("DELETE FROM score_snapshots"))


def forget_increment(engine: Engine) -> None:
    """Remove a previous measurement's day of data (its events, new leads and whatever hangs off them)."""
    new_keys = "SELECT key FROM leads WHERE lead_id LIKE 'NEW-%'"
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM events WHERE event_id LIKE 'daily-%'"))
        conn.execute(text("DELETE FROM stage_updates WHERE source = 'hubspot'"))
        for table in inspect(conn).get_table_names():
            if table != "leads" and "lead_key" in {c["name"] for c in inspect(conn).get_columns(table)}:
                conn.execute(text(f"DELETE FROM {table} WHERE lead_key IN ({new_keys})"))
        conn.execute(text(f"DELETE FROM leads WHERE key IN ({new_keys})"))
