"""The run lock between processes (SQLite and PostgreSQL), and stale runs left by a killed process."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from store.runlock import RunLocked, run_lock
from store.scores import finish_run, start_run

ROOT = Path(__file__).resolve().parents[2]
# A process that takes the lock of a scope, starts a run, says so, and holds both until stdin closes.
HOLDER = """
import sys
from datetime import UTC, datetime
from store.db import make_engine
from store.runlock import run_lock
from store.scores import start_run
engine = make_engine(sys.argv[1], connect_args={"options": sys.argv[2]} if sys.argv[2] else {})
with run_lock(engine, sys.argv[3]):
    print(start_run(engine, "score", datetime.now(UTC), sys.argv[3]), flush=True)
    sys.stdin.read()
"""


def _options(engine: Engine) -> str:
    return f"-csearch_path={_schema(engine)}" if engine.dialect.name == "postgresql" else ""


def _schema(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT current_schema()")).scalar_one())


def hold(url: str, options: str, scope: str) -> tuple[subprocess.Popen[str], str]:
    """Start a process holding ``scope``'s lock with a run started; returns it and its run id."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, options, scope],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


@pytest.fixture
def holder(engine: Engine) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process, run_id = hold(engine.url.render_as_string(hide_password=False), _options(engine), "demo")
    yield process, run_id
    if process.poll() is None:
        process.kill()
    process.wait()


def _run(engine: Engine, run_id: str) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT status, note FROM runs WHERE run_id = :r"), {"r": run_id}).one()
    return row.status, row.note


def test_a_second_process_is_refused_with_who_holds_the_lock(
    engine: Engine, holder: tuple[subprocess.Popen[str], str]
) -> None:
    process, run_id = holder
    with pytest.raises(RunLocked) as refused, run_lock(engine, "demo", wait_s=0.3, poll_s=0.1):
        pass
    assert f"run {run_id}, pid {process.pid} on " in str(refused.value)
    assert "another leadscore run is writing portfolio 'demo'" in str(refused.value)
    # Another portfolio on the same store is not held up; the holder's run is still running.
    with run_lock(engine, "other"):
        pass
    assert _run(engine, run_id) == ("running", None)


def test_a_waiting_run_goes_on_when_the_holder_finishes(
    engine: Engine, holder: tuple[subprocess.Popen[str], str]
) -> None:
    process, _ = holder
    assert process.stdin is not None
    process.stdin.close()  # the holder leaves its lock in about no time
    started = time.monotonic()
    with run_lock(engine, "demo", wait_s=30, poll_s=0.1):
        assert process.wait(timeout=10) == 0
    assert time.monotonic() - started < 20


def test_a_killed_run_is_marked_aborted_by_the_next_one(
    engine: Engine, holder: tuple[subprocess.Popen[str], str]
) -> None:
    process, run_id = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with run_lock(engine, "demo", wait_s=10, poll_s=0.1):
        mine = start_run(engine, "score", datetime.now(UTC), "demo")
        status, note = _run(engine, run_id)
        assert status == "aborted"
        assert note is not None and f"pid {process.pid} on " in note and "ended without finishing it" in note
        finish_run(engine, mine, "completed", {})
    assert _run(engine, mine) == ("completed", None)


def test_the_lock_is_reentrant_within_a_process_and_released_after(engine: Engine) -> None:
    with run_lock(engine, "demo"), run_lock(engine, "demo"), engine.connect() as conn:
        assert conn.execute(text("SELECT pid FROM run_locks WHERE scope = 'demo'")).scalar_one() == os.getpid()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM run_locks")).scalar_one() == 0
