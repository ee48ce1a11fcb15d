"""One writing run at a time per store and portfolio, and no run left ``running`` by a killed process.

Two runs that read the journeys' state before either writes would both fire every crossing, so a run
that writes holds the lock of its scope (the portfolio's name on this store) for its whole length:

- PostgreSQL: a session advisory lock keyed by (database, schema, scope) on a connection held for the
  run; the server releases it when that connection dies, so a killed run never keeps it. The
  ``run_locks`` row only says who holds it.
- SQLite: the ``run_locks`` row is the lock, inserted inside ``BEGIN IMMEDIATE`` (the database lets one
  writer check and insert at a time). A row whose process is gone (same host, pid no longer alive) is
  taken over.

Taking the lock first marks ``aborted`` every run left ``running`` by a process that is gone: the runs
of the scope (nobody else can be running them while we hold it) and any run of this host whose
process has ended. The lock is re-entrant within a process: the daily pipeline holds it around its steps.
"""

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text

from store.tables import from_micros, to_micros

HOST = socket.gethostname()
_held: dict[tuple[str, str], int] = {}  # (store url, scope) → depth, for re-entry within this process
_held_guard = threading.Lock()


@dataclass(frozen=True)
class Holder:
    run_id: str | None
    host: str
    pid: int
    acquired_at: datetime

    def __str__(self) -> str:
        run = f"run {self.run_id}, " if self.run_id else ""
        return f"{run}pid {self.pid} on {self.host}, since {self.acquired_at:%Y-%m-%d %H:%M:%S} UTC"


class RunLocked(RuntimeError):
    """Another process holds the scope's lock: the message says who and what to do."""

    def __init__(self, scope: str, holder: Holder | None, waited_s: float) -> None:
        self.scope, self.holder = scope, holder
        who = str(holder) if holder else "a process that has not recorded itself yet"
        super().__init__(
            f"another leadscore run is writing portfolio {scope!r} to this store ({who}); waited {waited_s:g} s. "
            "Let it finish and run again (LEADSCORE_RUN_LOCK_WAIT sets how long to wait); if that process is "
            "gone on another machine, delete its row from run_locks."
        )


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _gone(host: str | None, pid: int | None) -> bool:
    return host == HOST and pid is not None and not pid_alive(pid)


def _advisory_key(conn: Connection, scope: str) -> int:
    where = conn.execute(text("SELECT current_database() || '/' || current_schema()")).scalar_one()
    digest = hashlib.sha256(f"leadscore-run:{where}:{scope}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _holder(conn: Connection, scope: str) -> Holder | None:
    row = conn.execute(
        text("SELECT run_id, host, pid, acquired_at FROM run_locks WHERE scope = :scope"), {"scope": scope}
    ).first()
    return None if row is None else Holder(row.run_id, row.host, row.pid, from_micros(row.acquired_at))


def _record(conn: Connection, scope: str, now: datetime) -> None:
    conn.execute(text("DELETE FROM run_locks WHERE scope = :scope"), {"scope": scope})
    conn.execute(
        text("INSERT INTO run_locks (scope, host, pid, acquired_at) VALUES (:scope, :host, :pid, :at)"),
        {"scope": scope, "host": HOST, "pid": os.getpid(), "at": to_micros(now)},
    )


def abort_stale_runs(conn: Connection, scope: str, now: datetime) -> list[str]:
    """Mark ``aborted`` the runs left ``running`` by a process that is gone; returns their ids.

    Called with the scope's lock held: a running run of the scope cannot be alive then."""
    rows = conn.execute(text("SELECT run_id, scope, host, pid FROM runs WHERE status = 'running'")).all()
    stale = [row for row in rows if row.scope == scope or _gone(row.host, row.pid)]
    for row in stale:
        who = f"pid {row.pid} on {row.host}" if row.pid is not None else "its process"
        note = (
            f"aborted at {now:%Y-%m-%d %H:%M:%S} UTC by the next run (pid {os.getpid()} on {HOST}): "
            f"{who} ended without finishing it (killed or crashed)"
        )
        conn.execute(
            text("UPDATE runs SET status = 'aborted', finished_at = :at, note = :note WHERE run_id = :id"),
            {"at": to_micros(now), "note": note, "id": row.run_id},
        )
    return [row.run_id for row in stale]


def _try_sqlite(engine: Engine, scope: str) -> Holder | None:
    """Take the lock row (or a dead process's row); returns the live holder when it is taken."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        row = cursor.execute(
            "SELECT run_id, host, pid, acquired_at FROM run_locks WHERE scope = ?", (scope,)
        ).fetchone()
        if row is not None and not _gone(row[1], row[2]):
            raw.rollback()
            return Holder(row[0], row[1], row[2], from_micros(row[3]))
        now = datetime.now(UTC)
        cursor.execute("DELETE FROM run_locks WHERE scope = ?", (scope,))
        cursor.execute(
            "INSERT INTO run_locks (scope, host, pid, acquired_at) VALUES (?, ?, ?, ?)",
            (scope, HOST, os.getpid(), to_micros(now)),
        )
        raw.commit()
        return None
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


@contextmanager
def run_lock(engine: Engine, scope: str, *, wait_s: float = 0.0, poll_s: float = 0.5) -> Iterator[None]:
    """Hold ``scope``'s run lock on ``engine``'s store; wait up to ``wait_s`` for it, then raise ``RunLocked``."""
    key = (engine.url.render_as_string(hide_password=True), scope)
    with _held_guard:
        if _held.get(key):
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    started = time.monotonic()
    if engine.dialect.name == "postgresql":
        with _postgres_lock(engine, scope, wait_s, poll_s, started):
            with _held_guard:
                _held[key] = 1
            try:
                yield
            finally:
                with _held_guard:
                    _held.pop(key, None)
        return
    while (holder := _try_sqlite(engine, scope)) is not None:
        waited = time.monotonic() - started
        if waited >= wait_s:
            raise RunLocked(scope, holder, round(waited, 1))
        time.sleep(poll_s)
    with _held_guard:
        _held[key] = 1
    try:
        with engine.begin() as conn:
            abort_stale_runs(conn, scope, datetime.now(UTC))
        yield
    finally:
        with _held_guard:
            _held.pop(key, None)
        with engine.begin() as conn:
            conn.execute(
                text("DELETE FROM run_locks WHERE scope = :scope AND host = :host AND pid = :pid"),
                {"scope": scope, "host": HOST, "pid": os.getpid()},
            )


@contextmanager
def _postgres_lock(engine: Engine, scope: str, wait_s: float, poll_s: float, started: float) -> Iterator[None]:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        lock_key = _advisory_key(conn, scope)
        while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key}).scalar_one():
            waited = time.monotonic() - started
            if waited >= wait_s:
                raise RunLocked(scope, _holder(conn, scope), round(waited, 1))
            time.sleep(poll_s)
        try:
            now = datetime.now(UTC)
            _record(conn, scope, now)
            abort_stale_runs(conn, scope, now)
            yield
        finally:
            conn.execute(text("DELETE FROM run_locks WHERE scope = :scope"), {"scope": scope})
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key})


def holders(engine: Engine) -> list[tuple[str, Holder]]:
    """Who holds which scope's lock now (for the message about a store that is busy)."""
    with engine.connect() as conn:
        scopes = conn.execute(text("SELECT scope FROM run_locks ORDER BY scope")).scalars().all()
        return [(scope, holder) for scope in scopes if (holder := _holder(conn, scope)) is not None]


def claim(conn: Connection, scope: str | None, run_id: str) -> None:
    """Name ``run_id`` in the lock row this process holds (what ``RunLocked`` tells the next run)."""
    if scope is not None:
        conn.execute(
            text("UPDATE run_locks SET run_id = :run WHERE scope = :scope AND host = :host AND pid = :pid"),
            {"run": run_id, "scope": scope, "host": HOST, "pid": os.getpid()},
        )
