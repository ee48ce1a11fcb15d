"""ADBC reads of a SQLite file, run in helper processes.

The ADBC SQLite driver bundles its own copy of SQLite. Two SQLite copies in one process break each
other's POSIX locks (closing a file in one copy drops the other's locks), which shows up as
"database is locked" or "disk I/O error" as soon as SQLAlchemy (the system SQLite) writes while ADBC
reads. Across processes SQLite's locking works as designed, so the reading copy lives in a few
long-lived worker processes (this file run as a script: no re-import of the caller's main module, as
multiprocessing's spawn would do). Each result comes back as an Arrow IPC file in shared memory that
the caller maps: buffers, no per-value Python objects, no copy through a pipe.
"""

import atexit
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from typing import Any, BinaryIO

import pyarrow as pa

# Results travel as Arrow files in shared memory (RAM-backed on Linux) rather than through the pipe.
_RESULTS_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
# The driver infers column types from the first batch and fails when a later batch disagrees (a text
# column whose first 1024 values are NULL is typed INT64); one batch for the whole result avoids it.
_BATCH_ROWS = str(2**30)


class SqliteReadError(RuntimeError):
    """The reader process could not run the query; the message is the driver's."""


class _Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def fetch(self, path: str, sql: str, values: tuple[Any, ...]) -> pa.Table:
        assert self.process.stdin is not None and self.process.stdout is not None
        pickle.dump((path, sql, values), self.process.stdin)
        self.process.stdin.flush()
        status, message = pickle.load(self.process.stdout)
        if status != "ok":
            raise SqliteReadError(f"{message}\nquery: {sql}")
        try:  # the result file is mapped, not copied through the pipe
            return pa.ipc.open_file(pa.memory_map(message)).read_all()
        finally:
            os.unlink(message)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=10)


class _Pool:
    """At most ``size`` workers; each serves one query at a time."""

    def __init__(self) -> None:
        self.idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()

    def fetch(self, path: str, sql: str, values: tuple[Any, ...], size: int) -> pa.Table:
        worker = self._acquire(size)
        try:
            result = worker.fetch(path, sql, values)
        except (BrokenPipeError, EOFError, pickle.UnpicklingError, pa.ArrowInvalid):
            self._discard(worker)
            raise
        self.idle.put(worker)
        return result

    def _acquire(self, size: int) -> _Worker:
        with self.lock:
            try:
                return self.idle.get_nowait()
            except queue.Empty:
                if len(self.workers) < max(1, size):
                    worker = _Worker()
                    self.workers.append(worker)
                    return worker
        return self.idle.get()

    def _discard(self, worker: _Worker) -> None:
        with self.lock:
            self.workers.remove(worker)
        worker.process.kill()

    def close(self) -> None:
        with self.lock:
            for worker in self.workers:
                worker.close()
            self.workers.clear()


_pool = _Pool()
atexit.register(_pool.close)


def reader_workers() -> list[_Worker]:
    """The live reader processes (benchmarks add up their memory)."""
    return list(_pool.workers)


def fetch_arrow(path: str, sql: str, values: Sequence[Any], workers: int) -> pa.Table:
    """Run ``sql`` (``?`` parameters) on the SQLite file ``path`` in a reader process."""
    return _pool.fetch(path, sql, tuple(values), workers)


def _serve(requests: BinaryIO, replies: BinaryIO) -> None:
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    while True:
        try:
            path, sql, values = pickle.load(requests)
        except EOFError:
            return
        try:
            with adbc_sqlite.connect(path) as conn, conn.cursor() as cur:
                cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": _BATCH_ROWS})
                cur.execute(sql, values or None)
                table = cur.fetch_arrow_table()
        except Exception as exc:  # the caller raises it with the query
            pickle.dump(("error", f"{type(exc).__name__}: {exc}"), replies)
            replies.flush()
            continue
        with (
            tempfile.NamedTemporaryFile(dir=_RESULTS_DIR, prefix="leadscore-", suffix=".arrow", delete=False) as out,
            pa.ipc.new_file(out, table.schema) as writer,
        ):
            writer.write_table(table)
        pickle.dump(("ok", out.name), replies)
        replies.flush()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
