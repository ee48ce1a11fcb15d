"""ADBC reads of a SQLite file, run in helper processes.

The ADBC SQLite driver bundles its own copy of SQLite. Two SQLite copies in one process break each
other's POSIX locks (closing a file in one copy drops the other's locks), which shows up as
"database is locked" or "disk I/O error" as soon as SQLAlchemy (the system SQLite) writes while ADBC
reads. Across processes, SQLite's locking works as designed, so the reading copy lives in a small
process pool; Arrow tables come back pickled (buffers, no per-value Python objects).
"""

import atexit
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pyarrow as pa

# The driver infers column types from the first batch and fails when a later batch disagrees (a text
# column whose first 1024 values are NULL is typed INT64); one batch for the whole result avoids it.
_BATCH_ROWS = str(2**30)
_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def fetch_arrow(path: str, sql: str, values: Sequence[Any], workers: int) -> pa.Table:
    """Run ``sql`` (``?`` parameters) on the SQLite file ``path`` in a reader process."""
    return _executor(workers).submit(_read, path, sql, tuple(values)).result()


def _executor(workers: int) -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            # spawn, not fork: the parent has threads (Prefect, task runners) and open SQLite handles.
            _pool = ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn"))
            atexit.register(_pool.shutdown, cancel_futures=True)
        return _pool


def _read(path: str, sql: str, values: tuple[Any, ...]) -> pa.Table:
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    with adbc_sqlite.connect(path) as conn, conn.cursor() as cur:
        cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": _BATCH_ROWS})
        cur.execute(sql, values or None)
        return cur.fetch_arrow_table()
