"""A SQLite back-fill's events staged in a file of their own, then merged into ``events`` in lead-key ranges.

A back-fill's files are in time order, so every transaction that writes them straight into the
lead-clustered ``events`` table changes pages all over it, and the cost per million grows with what is
stored (+1.8 CPU s a million for each million stored, measured at 1M leads). Staged, the accepted rows
are appended to a plain rowid table in a SQLite file beside the store, ATTACHed to the back-fill's
connections as ``backfill``: the checks see it as part of the store (its ``event_id`` is unique, so a
repeated or already staged id is skipped as a stored one is; its ``message_id`` index answers the
machine-activity detector's look-up of earlier deliveries). Once every file is staged, the rows are
merged into ``events`` a range of lead keys at a time, in key order, each range its own short
transaction (so the store's write lock is held seconds, not minutes: other writers wait under a 60 s
busy timeout), and the file is deleted.

Measured, 10 × 1M demo events into a 1M-lead store, alternated with the direct load (load 2-5): direct
290.2, 273.2 CPU s (20 → 33 a million as the store grows); staged 265.0, 261.0: staging flat at ≈ 16 a
million, the merge ≈ 9 a million (90 s for 10M, ranges of ≤ 8.5 s). What the merge pays is the
``event_id`` index: a range's ids are spread over the whole back-fill, so its rows land all over it.

Crash safety: a killed back-fill leaves the file, and the next one takes it up. Staging commits as a
file load does (whole transactions; the next run skips what is staged or stored). A merged range's
transaction also moves the merge's mark in the staging file; SQLite commits the store before the
attached file, so a kill in between leaves the mark one range behind, and that range is merged again
as a no-op (``INSERT OR IGNORE``; its leads' change-log counters are bumped once more, which only makes
a reader of the event cache re-read them). The mark holds the staged rows' last rowid too: a run that
staged rows since (they may lie below the mark) merges from the start. One back-fill at a time stages
into a store: the file is locked (``flock``) while one does.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl
from sqlalchemy import Column, Engine, Index, MetaData, Table, event, text
from sqlalchemy.engine import make_url

from store.change_log import counted_per_lead
from store.db import SQLITE_PAGE_BYTES, make_engine
from store.ingest.lookup import raw_frame
from store.ingest.skeleton import FILE_CACHE_KIB, FILE_TRANSACTION_SECONDS
from store.tables import Event

SCHEMA = "backfill"  # the staging file's name on the back-fill's connections
SUFFIX = ".backfill"  # the staging file: the store's path with this added
_EVENTS = Event.__table__
_KEY = ", ".join(column.name for column in _EVENTS.primary_key.columns)
_NAMES = ", ".join(column.name for column in _EVENTS.columns)
_PER_LEAD = {"lead_key": pl.Int64(), "rows": pl.Int64()}
# A merge transaction's target length: half a file load's, well below the writers' busy timeout (60 s).
# Longer is cheaper: a range's rows go to the ``event_id`` index all over it (their ids are spread over
# the back-fill's time), and each commit writes the index pages its range changed.
MERGE_SECONDS = FILE_TRANSACTION_SECONDS / 2
FIRST_RANGE_ROWS = 250_000  # the first range's rows, before a range's time is known
STAGE_CACHE_KIB = 256 * 1024  # the staging file's page cache on each back-fill connection


def _stage_table() -> Table:
    """``events``' columns in a rowid table under ``SCHEMA``: appended to in file order (no scattered
    pages), with the unique ``event_id`` and the partial ``message_id`` index the checks read."""
    columns = [Column(column.name, column.type, nullable=column.nullable) for column in _EVENTS.columns]
    named = text("message_id IS NOT NULL")
    table = Table("events", MetaData(), *columns, schema=SCHEMA)
    Index("ux_stage_event_id", table.c.event_id, unique=True)
    Index("ix_stage_message_id", table.c.message_id, sqlite_where=named)
    return table


STAGED = _stage_table()
_MARK = f"{SCHEMA}.merge_mark"  # one row: the lead keys below ``merged_below`` are merged


@dataclass
class EventStage:
    """The staging file of a back-fill into the SQLite store at ``database``, and an engine whose
    connections have it attached (``engine``: the back-fill's engine, disposed by ``close``).

    The files' reports count the rows they staged as inserted; what the store gained is what the merge
    inserted: rows a killed back-fill staged are merged now, and a stored id a chunk's probe missed is
    staged but not merged. ``staged`` and ``merged`` (set by ``merge``) let the load's report say so."""

    path: Path
    engine: Engine
    lock: BinaryIO  # the staging file, open and locked: another back-fill must not stage into it or delete it
    staged_before: int  # the rows staged by a killed back-fill, found in the file when this one opened it
    table: Table = STAGED
    staged: int = 0  # the rows this back-fill staged
    merged: int = 0  # the rows the merge inserted into ``events``

    @classmethod
    def open(cls, url: str) -> EventStage:
        """The staging file beside the store of ``url`` (made if missing; one left by a killed back-fill
        is taken up again), attached to every connection of a new engine."""
        path = _stage_path(url)
        if path is None:
            raise ValueError("a staged back-fill needs a SQLite store in a file")
        lock = _locked(path)
        engine = make_engine(url)
        event.listen(engine, "connect", lambda dbapi_conn, _record: _attach(dbapi_conn, path))
        engine.dispose()  # the migration's connection, made before the listener
        with engine.begin() as conn:
            STAGED.metadata.create_all(conn)
            conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {_MARK} (merged_below INTEGER, staged_upto INTEGER)")
            before = _last_rowid(conn)
        return cls(path, engine, lock, before)

    def merge(self) -> int:
        """Merge the staged rows into ``events`` a lead-key range a transaction (each about
        ``MERGE_SECONDS``), from the mark on; returns the rows inserted."""
        inserted = 0
        with self.engine.connect() as conn:  # the engine's own: disposed with its page cache by ``close``
            conn.exec_driver_sql(f"PRAGMA main.cache_size=-{FILE_CACHE_KIB}")  # the index pages, between ranges
            conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {SCHEMA}.ix_stage_key ON events ({_KEY})")
            upto = _last_rowid(conn)
            self.staged = upto - self.staged_before  # appended in rowid order: no row is ever deleted from it
            mark = conn.exec_driver_sql(f"SELECT merged_below, staged_upto FROM {_MARK}").first()
            below = mark[0] if mark is not None and mark[1] == upto else None  # rows staged since: from the start
            query = text(
                f"SELECT lead_key, count(*) FROM {SCHEMA}.events WHERE lead_key >= :below GROUP BY lead_key ORDER BY 1"
            )
            per_lead = raw_frame(conn, query, _PER_LEAD, {"below": -(2**63) if below is None else below})
            conn.commit()
            ranges = _Ranges(per_lead)
            for keys in ranges:
                began = time.monotonic()
                with conn.begin():
                    with counted_per_lead(conn, keys):  # the change log's bumps, once per lead of the range
                        inserted += _insert_range(conn, int(keys[0]), int(keys[-1]))
                    conn.exec_driver_sql(f"DELETE FROM {_MARK}")
                    conn.exec_driver_sql(f"INSERT INTO {_MARK} VALUES (?, ?)", (int(keys[-1]) + 1, upto))
                ranges.took(time.monotonic() - began)
        self.merged = inserted
        return inserted

    def close(self, *, delete: bool) -> None:
        """Dispose of the engine; ``delete``: the staging file too (merged). The lock goes last: closing
        a file SQLite has open drops the process's locks on it, and its connections are closed by then."""
        self.engine.dispose()
        if delete:
            for suffix in ("", "-wal", "-shm", "-journal"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        self.lock.close()


def leftover_stage(url: str) -> Path | None:
    """The staging file a killed back-fill left beside the SQLite store of ``url``, its events not yet in
    the store (None: there is none, or a back-fill is staging into it now)."""
    path = _stage_path(url)
    if path is None or not path.exists() or path.stat().st_size == 0:
        return None
    with path.open("rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
    return path


def _stage_path(url: str) -> Path | None:
    """The staging file of the SQLite store in a file at ``url``: the store's path and ``SUFFIX``."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database).with_name(Path(database).name + SUFFIX)


@contextmanager
def staged_events(url: str) -> Iterator[EventStage]:
    """A back-fill's events staged (``ingest_events(stage.engine, …, stage=stage.table)`` for each file
    inside the block), then merged into the store and the file deleted; on an error or a kill the file
    stays for the next run."""
    stage = EventStage.open(url)
    try:
        yield stage
        stage.merge()
    except BaseException:
        stage.close(delete=False)
        raise
    stage.close(delete=True)


def _last_rowid(conn: Any) -> int:
    """The stage's last rowid: its rows are only ever appended."""
    return int(conn.exec_driver_sql(f"SELECT coalesce(max(rowid), 0) FROM {SCHEMA}.events").scalar_one())


def _insert_range(conn: Any, lo: int, hi: int) -> int:
    """The staged rows of the leads ``lo``..``hi`` into ``events``, in its key order (each page written
    once); a stored ``event_id`` is skipped."""
    statement = (
        f"INSERT OR IGNORE INTO main.events ({_NAMES}) SELECT {_NAMES} FROM {SCHEMA}.events "
        f"WHERE lead_key BETWEEN ? AND ? ORDER BY {_KEY}"
    )
    return int(conn.exec_driver_sql(statement, (lo, hi)).rowcount)


class _Ranges:
    """Consecutive ranges of the staged leads, as each range's rows' lead keys (one per row, in key
    order: what ``counted_per_lead`` takes), sized so that a range takes about ``MERGE_SECONDS``: the
    next range's rows follow the last one's rate (``took``)."""

    def __init__(self, per_lead: pl.DataFrame) -> None:
        self.keys, self.counts = per_lead["lead_key"], per_lead["rows"]
        self.ends = self.counts.cum_sum()
        self.rows = FIRST_RANGE_ROWS
        self._last = 0

    def __iter__(self) -> Iterator[pl.Series]:
        start, done = 0, 0
        while start < len(self.keys):
            # The last lead whose rows end within the target (at least one lead a range).
            stop = max(start + 1, int(self.ends.search_sorted(done + self.rows, side="right")))
            self._last = int(self.ends[stop - 1]) - done
            yield self.keys[start:stop].repeat_by(self.counts[start:stop]).explode()
            start, done = stop, int(self.ends[stop - 1])

    def took(self, seconds: float) -> None:
        """The last range took ``seconds``: the next one's rows aim at ``MERGE_SECONDS`` (at most twice
        as many as the last)."""
        rate = self._last / max(seconds, 1e-3)
        self.rows = max(1, min(int(rate * MERGE_SECONDS), 2 * max(self._last, 1)))


def _locked(path: Path) -> BinaryIO:
    """``path`` open and locked for this back-fill; ``ValueError`` when another one holds it. The lock
    is on the file a path names now: one deleted by a back-fill that just finished is not locked again."""
    while True:
        handle = path.open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ValueError(f"another back-fill is staging into this store ({path})") from None
        if path.exists() and path.stat().st_ino == os.fstat(handle.fileno()).st_ino:
            return handle
        handle.close()


def _attach(dbapi_conn: Any, path: Path) -> None:
    """Attach the staging file as ``SCHEMA``, in WAL mode (the checking thread reads it while the
    writing one writes) and with a page cache of its own (``cache_size`` is per attached file)."""
    cur = dbapi_conn.cursor()
    cur.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (str(path),))
    cur.execute(f"PRAGMA {SCHEMA}.page_size={SQLITE_PAGE_BYTES}")  # as the store's (a no-op once it has pages)
    cur.execute(f"PRAGMA {SCHEMA}.journal_mode=WAL")
    cur.execute(f"PRAGMA {SCHEMA}.synchronous=NORMAL")
    cur.execute(f"PRAGMA {SCHEMA}.cache_size=-{STAGE_CACHE_KIB}")
    cur.close()
