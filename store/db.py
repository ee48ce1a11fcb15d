"""Engine and sessions for a database URL; SQLite gets WAL mode and a busy timeout; the schema is migrated to head."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine, event, text
from sqlmodel import Session, create_engine

import store.account_tables
import store.audiences
import store.console_tables
import store.identity_tables
import store.nurture_tables  # registers the nurture tables
import store.outbox_tables
import store.service_tables
import store.tombstones  # noqa: F401  (registers the outbox, service, console and tombstone tables)
from store import tables  # noqa: F401  (registers the tables on the metadata)
from store.migrate import upgrade

SQLITE_BUSY_TIMEOUT = 60  # seconds a SQLite write waits for another writer before "database is locked"


def make_engine(url: str, *, wal_checkpoint_pages: int | None = None, **kwargs: Any) -> Engine:
    """Create the engine and bring the schema to the newest migration (idempotent; keeps existing data).

    ``wal_checkpoint_pages``: on SQLite, the size of the write-ahead log (in pages) past which a commit
    copies it into the database file (SQLite's default: 1,000). A writer whose every commit writes more
    than that checkpoints at every commit, copying again pages the previous commit had just copied."""
    if url.startswith("sqlite") and "timeout=" not in url:  # ``?timeout=SECONDS`` in the URL says otherwise
        kwargs.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT})
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", partial(_sqlite_pragmas, wal_checkpoint_pages=wal_checkpoint_pages))
    upgrade(engine)
    return engine


SQLITE_PAGE_BYTES = 16_384
"""The page size of a new SQLite store (SQLite's default: 4,096). A bulk load writes into the lead-clustered
events table all over it: once the table outgrows the page cache, each transaction reads, spills and
commits (then checkpoints) pages across the whole file, a system call a page. Pages four times larger make
a quarter of those calls for the same bytes. Measured, 5M demo events into a 1M-lead store through
``leadscore ingest``, alternated: 144.5, 154.3 s with 4 KB pages, 114.1, 120.9 s with 16 KB (110.0 with
32 KB). Set before the file's first write (WAL mode is one): a store made before keeps its page size."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, wal_checkpoint_pages: int | None = None) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA page_size={SQLITE_PAGE_BYTES}")  # a no-op on a store that has pages already
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    if wal_checkpoint_pages is not None:
        cur.execute(f"PRAGMA wal_autocheckpoint={int(wal_checkpoint_pages)}")
    cur.execute("PRAGMA foreign_keys=ON")
    # Ingest inserts into the lead-clustered events table at scattered positions: a large page cache
    # keeps those B-tree pages in memory (the default 2 MB makes a 5M-event load disk-bound).
    cur.execute("PRAGMA cache_size=-262144")
    cur.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# Autovacuum's analyze threshold (its defaults): rows changed since the last ANALYZE > 50 + 10 % of the table.
ANALYZE_BASE_ROWS = 50
ANALYZE_SCALE = 0.1


def refresh_statistics(engine: Engine) -> list[str]:
    """On PostgreSQL, ``ANALYZE`` now the tables of the current schema that autovacuum would analyze soon.

    A pipeline step can grow a table many-fold (the first nurture run fills its tables, a back-fill
    multiplies the events) and the next step queries it at once, long before autovacuum notices: with
    statistics that still say "5 rows", PostgreSQL plans nested loops over seq scans and a seconds-long
    query takes hours. The threshold is autovacuum's own (50 rows + 10 % of the table changed since the
    last analyze), so a quiet day analyzes nothing. SQLite plans without statistics: nothing to do.
    Returns the tables analyzed.
    """
    if engine.dialect.name != "postgresql":
        return []
    stale = text(
        "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema()"
        f" AND n_mod_since_analyze > {ANALYZE_BASE_ROWS} + {ANALYZE_SCALE} * GREATEST(n_live_tup, 0) ORDER BY relname"
    )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        names = list(conn.execute(stale).scalars())
        for name in names:
            _analyze(conn, name)
    return names


def _analyze(conn: Connection, table: str) -> None:
    conn.execute(text(f"ANALYZE {conn.dialect.identifier_preparer.quote(table)}"))


class GrowingTable:
    """Keeps PostgreSQL's statistics of a table a bulk load is growing, as autovacuum would.

    A file of millions of rows is stored chunk by chunk, and each chunk looks up what is already
    stored. With the statistics of the table before the load (or none: autovacuum off or behind), the
    planner keeps estimating a small table and answers those look-ups with sequential scans: a
    20M-event load slowed to 50,000 events every three minutes at 16M. This counts the rows the load
    reports (the server's activity counters are flushed lazily) and analyzes each time the table has
    doubled since its last ANALYZE (``GROWTH``): statistics within a factor of two of the truth plan the
    same index look-ups, and a load from empty analyzes log2 times, not once per chunk as autovacuum's
    10 % would (each ANALYZE samples 30,000 rows: ≈ 0.2 server CPU s). On SQLite, which plans without
    statistics, it does nothing.
    """

    GROWTH = 1.0  # rows added since the last ANALYZE, as a share of the table then, that call for the next

    def __init__(self, engine: Engine, table: str) -> None:
        self.engine, self.table = engine, table
        self._rows: float | None = None  # the table's rows as of its last ANALYZE (read at the first chunk)
        self._added = 0  # rows added since then

    def added(self, rows: int) -> None:
        """``rows``: rows just added (one chunk's; one instance may follow many loads, the service's
        calls); analyzes when what was added since the last ANALYZE grew past the threshold."""
        if self.engine.dialect.name != "postgresql":
            return
        if self._rows is None:
            self._rows = self._reltuples()
        self._added += rows
        if self._added > ANALYZE_BASE_ROWS + self.GROWTH * self._rows:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                _analyze(conn, self.table)
            self._rows, self._added = self._reltuples(), 0

    def _reltuples(self) -> float:
        query = text("SELECT reltuples FROM pg_class WHERE oid = CAST(:name AS regclass)")
        with self.engine.connect() as conn:
            return max(float(conn.execute(query, {"name": self.table}).scalar_one()), 0.0)  # -1: never analyzed
