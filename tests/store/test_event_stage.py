"""A staged SQLite back-fill (``store.ingest.event_stage``) against the direct load of the same files, on
randomised files with bad rows, duplicates within and across files, machine activity and visitors; and
killed with SIGKILL while staging or merging, then run again: the store a clean run leaves."""

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from store.change_log import ensure_tracking
from store.db import make_engine
from store.ingest import event_stage, ingest_events, ingest_leads
from store.ingest.event_stage import staged_events
from tests.store.samples import ingest_summary, stored_events
from tests.store.test_ingest_equivalence import LEADS, LINES, TYPES, _files

ROOT = Path(__file__).resolve().parents[2]
OPTIONS: dict[str, Any] = {"event_types": TYPES, "product_lines": LINES, "chunk_size": 37, "transaction_rows": 80}


def _store(tmp_path: Path, name: str) -> str:
    """A store with the leads and the change log's triggers, and its URL."""
    url = f"sqlite:///{tmp_path}/{name}.db"
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,email\n" + "".join(f"{lead},{lead.lower()}@example.com\n" for lead in LEADS))
    engine = make_engine(url)
    ingest_leads(engine, leads)
    ensure_tracking(engine)
    engine.dispose()
    return url


def _state(url: str) -> tuple[Any, ...]:
    """Every stored event, visitor link and reject but times of ingestion, and the leads whose events
    the change log says changed (a generation counter, not its value: bumps per transaction differ)."""
    engine = make_engine(url)
    with engine.connect() as conn:
        bumped = conn.execute(text("SELECT lead_key FROM event_generations ORDER BY 1")).scalars().all()
    state = (stored_events(engine), bumped)
    engine.dispose()
    return state


def _direct(engine: Engine, files: list[Path]) -> list[Any]:
    return [ingest_summary(ingest_events(engine, path, **OPTIONS)) for path in files]


def _staged(url: str, files: list[Path]) -> list[Any]:
    with staged_events(url) as stage:
        return [ingest_summary(ingest_events(stage.engine, path, stage=stage.table, **OPTIONS)) for path in files]


@pytest.fixture(autouse=True)
def _small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Merge ranges of a few leads each, so a merge takes many transactions."""
    monkeypatch.setattr(event_stage, "FIRST_RANGE_ROWS", 40)
    monkeypatch.setattr(event_stage, "MERGE_SECONDS", 1e-6)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_staged_backfill_stores_what_the_direct_load_stores(tmp_path: Path, seed: int) -> None:
    files = _files(tmp_path, seed)
    direct_url, staged_url = _store(tmp_path, "direct"), _store(tmp_path, "staged")
    direct = make_engine(direct_url)
    before = make_engine(staged_url)
    # Some events stored before the back-fill: its repeats of them are skipped, their flags still set.
    assert _direct(direct, files[:1]) == _direct(before, files[:1])
    before.dispose()
    expected = _direct(direct, files[1:] + files[:2])
    direct.dispose()
    assert _staged(staged_url, files[1:] + files[:2]) == expected
    assert _state(staged_url) == _state(direct_url)
    assert not list(tmp_path.glob("staged.db.backfill*"))  # merged, the staging file is gone
    (rows, _), bumped = _state(staged_url)
    assert len(rows) > 300 and any(len(row) > 5 and row[5] is True for row in rows) and len(bumped) > 20


LOAD = """
import os, signal, sys
from pathlib import Path
from store.ingest import event_stage, events
from tests.store.test_event_stage import OPTIONS, _staged

where, after = sys.argv[2], int(sys.argv[3])
event_stage.FIRST_RANGE_ROWS, event_stage.MERGE_SECONDS = 40, 1e-6
calls = 0

def killing(function):
    def call(*args, **kwargs):
        global calls
        result = function(*args, **kwargs)
        calls += 1
        if calls == after:  # inside the transaction, its rows written
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return call

if where == "stage":
    events.merge_ignoring_stored = killing(events.merge_ignoring_stored)
elif where == "merge":
    event_stage._insert_range = killing(event_stage._insert_range)
print(_staged(sys.argv[1], [Path(name) for name in sys.argv[4:]]))
"""


def _load(url: str, files: list[Path], where: str = "", after: int = 0) -> subprocess.CompletedProcess[str]:
    """The staged back-fill in a process of its own, killed after ``after`` writes to the staging table
    (``where`` "stage") or range merges ("merge")."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", LOAD, url, where, str(after), *map(str, files)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize(("where", "after"), [("stage", 3), ("stage", 9), ("merge", 1), ("merge", 6)])
def test_a_staged_backfill_killed_then_run_again_leaves_the_store_of_a_clean_run(
    tmp_path: Path, where: str, after: int
) -> None:
    files = _files(tmp_path, 4)
    clean_url, killed_url = _store(tmp_path, "clean"), _store(tmp_path, "killed")
    _staged(clean_url, files)
    killed = _load(killed_url, files, where, after)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / "killed.db.backfill").exists()
    again = _load(killed_url, files)
    assert again.returncode == 0, again.stderr
    assert _state(killed_url) == _state(clean_url)
    assert not (tmp_path / "killed.db.backfill").exists()


def test_rows_staged_after_a_killed_merge_are_merged_whatever_their_leads(tmp_path: Path) -> None:
    """The next run brings a file more: its rows may belong to leads the killed merge had passed."""
    files = _files(tmp_path, 5)
    clean_url, killed_url = _store(tmp_path, "clean"), _store(tmp_path, "killed")
    _staged(clean_url, files)
    assert _load(killed_url, files[:-1], "merge", 4).returncode == -signal.SIGKILL
    again = _load(killed_url, files)
    assert again.returncode == 0, again.stderr
    assert _state(killed_url) == _state(clean_url)


def test_one_backfill_at_a_time_stages_into_a_store(tmp_path: Path) -> None:
    url = _store(tmp_path, "store")
    with staged_events(url), pytest.raises(ValueError, match="another back-fill"), staged_events(url):
        pass
    assert not list(tmp_path.glob("store.db.backfill*"))
    with staged_events(url):  # the first one done, a next one may start
        assert (tmp_path / "store.db.backfill").exists()


def test_the_staging_file_has_the_stores_page_size(tmp_path: Path) -> None:
    url = _store(tmp_path, "store")
    with staged_events(url) as stage, stage.engine.connect() as conn:
        assert conn.exec_driver_sql(f"PRAGMA {event_stage.SCHEMA}.page_size").scalar_one() == 16_384
        assert conn.exec_driver_sql("PRAGMA main.page_size").scalar_one() == 16_384
