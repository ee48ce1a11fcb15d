"""A load killed with SIGKILL mid-file, then run again: whole chunks only, nothing doubled or lost."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from store.bulk_indexes import missing_deferred_indexes
from store.db import make_engine
from store.tables import Event, IngestReject
from tests.postgres import postgres_url, search_path_url, throwaway_schema

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 60_000
DISTINCT = 59_900  # the last 100 rows repeat the first ids with other content: skipped, first one kept
OPENS = 19_966  # rows 1, 4, 7 … below 59,900 are opens, less row 7 (the bad row)
LOAD = """
import sys
from contextlib import nullcontext
from pathlib import Path
import store.bulk_indexes
from store.db import make_engine
from store.ingest import ingest_events
engine, path, first_bulk = make_engine(sys.argv[1]), Path(sys.argv[2]), sys.argv[4] == "first-bulk"
store.bulk_indexes.BULK_BYTES = 0  # with first-bulk: as a back-fill's first load (flows.ingestion.backfill)
with store.bulk_indexes.indexes_deferred(engine, "events", [path]) if first_bulk else nullcontext():
    report = ingest_events(engine, path, event_types={"page_view", "email_delivered", "email_open"},
                           chunk_size=2_000, transaction_rows=int(sys.argv[3]))
print(report.summary())
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/kill.db"
        return
    with throwaway_schema(postgres_url(), "kill") as schema:
        yield search_path_url(postgres_url(), schema)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id\n" + "".join(f"L{n}\n" for n in range(500)))
    events = tmp_path / "events.csv"
    rows = []
    for n in range(EVENTS):
        kind = ("email_delivered", "email_open", "page_view")[n % 3]
        when = f"2026-03-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z"
        rows.append(f"E{n % DISTINCT},L{n % 500},{kind},{when},<m{n // 3}@x>\n")
    rows[7] = "bad,L1,nonsense,2026-03-01T00:00:00Z,\n"
    events.write_text("event_id,lead_id,type,occurred_at,message_id\n" + "".join(rows))
    return leads, events


def _load(url: str, path: Path, transaction_rows: int = 0, first_bulk: bool = False) -> subprocess.Popen[str]:
    """The load in a process of its own; ``transaction_rows`` 0: a transaction per chunk. ``first_bulk``: the
    indexes a first bulk load defers are dropped while it runs (``store.bulk_indexes``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", LOAD, url, str(path), str(transaction_rows), "first-bulk" if first_bulk else ""]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)


def _counts(url: str) -> tuple[int, int, int, int]:
    engine = make_engine(url)
    events, rejects = Event.__table__, IngestReject.__table__
    with engine.connect() as conn:
        stored = conn.execute(select(func.count(), func.count(events.c.event_id.distinct()))).one()
        machine = conn.execute(select(func.count()).where(events.c.machine)).scalar_one()
        refused = conn.execute(select(func.count()).select_from(rejects)).scalar_one()
    engine.dispose()
    return stored[0], stored[1], machine, refused


def kill_after_first_chunk(load: subprocess.Popen[str], stored: Callable[[], int]) -> None:
    """SIGKILL the loading process once ``stored()`` shows a committed chunk (or after 300 s)."""
    deadline = time.monotonic() + 300
    while stored() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    load.send_signal(signal.SIGKILL)
    load.wait()


def test_a_load_killed_mid_file_then_run_again_leaves_no_partial_or_doubled_rows(url: str, tmp_path: Path) -> None:
    from store.ingest import ingest_leads

    leads, events = _files(tmp_path)
    engine = make_engine(url)
    ingest_leads(engine, leads)
    engine.dispose()
    kill_after_first_chunk(_load(url, events), lambda: _counts(url)[0])
    stored = _counts(url)[0]
    # Whole chunks only: the first (2,000 rows, holding the one bad row) is checked and written as two
    # halves of 1,000, the others 2,000 rows each. The repeated ids come last.
    assert 0 < stored < DISTINCT and (stored + 1) % 1_000 == 0

    rerun = _load(url, events)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert f"inserted {DISTINCT - stored}," in out
    # Every distinct event once, every open flagged (its delivery is a second earlier), the one reject once.
    assert _counts(url) == (DISTINCT, DISTINCT, OPENS, 1)


def test_a_first_bulk_load_killed_leaves_the_primary_key_out_and_the_re_run_builds_it(url: str, tmp_path: Path) -> None:
    """PostgreSQL's first bulk load of events drops their primary key while it runs: killed, the store keeps
    whole chunks without it, and the next load builds it first, then loads the rest once. (SQLite's events
    are clustered on that key: nothing is dropped there.)"""
    from store.ingest import ingest_leads

    leads, events = _files(tmp_path)
    engine = make_engine(url)
    ingest_leads(engine, leads)
    kill_after_first_chunk(_load(url, events, first_bulk=True), lambda: _counts(url)[0])
    stored = _counts(url)[0]
    assert 0 < stored < DISTINCT and (stored + 1) % 1_000 == 0
    dropped = ["events_pkey"] if engine.dialect.name == "postgresql" else []
    assert missing_deferred_indexes(engine, "events") == dropped

    rerun = _load(url, events, first_bulk=True)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert f"inserted {DISTINCT - stored}," in out
    assert _counts(url) == (DISTINCT, DISTINCT, OPENS, 1)
    assert missing_deferred_indexes(engine, "events") == []
    assert inspect(engine).get_pk_constraint("events")["constrained_columns"] == ["lead_key", "occurred_at", "event_id"]
    engine.dispose()


def test_a_sqlite_load_of_many_chunks_a_transaction_killed_then_run_again_leaves_whole_transactions(
    tmp_path: Path,
) -> None:
    """A file's chunks written several to a transaction (SQLite's file loads): the kill loses the open
    transaction's chunks, never part of them, and the next run writes them once."""
    from store.ingest import ingest_leads

    url = f"sqlite:///{tmp_path}/kill.db"
    leads, events = _files(tmp_path)
    engine = make_engine(url)
    ingest_leads(engine, leads)
    engine.dispose()
    kill_after_first_chunk(_load(url, events, transaction_rows=5_000), lambda: _counts(url)[0])
    stored = _counts(url)[0]
    # Transactions of at least 5,000 rows: the halves of the first chunk (1,000 + 1,000, the bad row in
    # them) and two chunks of 2,000 make the first, three chunks of 2,000 each one after it.
    assert 0 < stored < DISTINCT and (stored + 1) % 6_000 == 0

    rerun = _load(url, events, transaction_rows=5_000)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert f"inserted {DISTINCT - stored}," in out
    assert _counts(url) == (DISTINCT, DISTINCT, OPENS, 1)
