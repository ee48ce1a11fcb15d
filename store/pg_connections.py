"""Open ADBC connections to PostgreSQL, kept per engine and reused by the columnar reads.

Opening a libpq connection costs a few milliseconds on an idle machine and a quarter of a second
on a loaded one, and a scoring run makes about a hundred small reads (journeys, arms, milestones,
change counters per partition): opened afresh each time, the connections cost more than the reads.
Connections are in autocommit mode (an idle one holds no lock and no snapshot), serve one read at a
time, are dropped after a failed read, belong to the process that opened them (a forked worker
opens its own) and are closed when the engine is disposed (a database used as a template must have
no open connection).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

KEEP = 8
"""Idle connections kept per engine: a run's reading threads find one open."""


class _Pool:
    def __init__(self, uri: str) -> None:
        self.uri, self.pid = uri, os.getpid()
        self.idle: list[Any] = []
        self.lock = threading.Lock()

    def take(self) -> Any:
        import adbc_driver_postgresql.dbapi as adbc_pg

        with self.lock:
            if self.idle:
                return self.idle.pop()
        return adbc_pg.connect(self.uri, autocommit=True)

    def give(self, conn: Any) -> None:
        with self.lock:
            if len(self.idle) < KEEP:
                self.idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        if self.pid == os.getpid():  # a forked copy must not close its parent's sockets
            for conn in idle:
                conn.close()


_guard = threading.Lock()
_pools: weakref.WeakKeyDictionary[Engine, _Pool] = weakref.WeakKeyDictionary()


def _pool(engine: Engine, uri: str) -> _Pool:
    with _guard:
        pool = _pools.get(engine)
        if pool is None or pool.pid != os.getpid() or pool.uri != uri:
            pool = _pools[engine] = _Pool(uri)
            event.listen(engine, "engine_disposed", lambda _conn: pool.close())
        return pool


@contextmanager
def connection(engine: Engine, uri: str) -> Iterator[Any]:
    """An open autocommit ADBC connection to ``uri`` (the engine's database), returned to the pool after use."""
    pool = _pool(engine, uri)
    conn = pool.take()
    try:
        yield conn
    except BaseException:
        conn.close()  # a failed read may leave it unusable
        raise
    pool.give(conn)
