"""The one chunk loop every ingestion runs: read a chunk, reject unreadable rows, validate outside the
transaction, write inside one transaction per chunk together with the chunk's rejects.

Work is done a chunk of rows at a time — one validation call, a handful of batched look-ups and bulk
writes per chunk — so a file of a million rows takes seconds, and a killed load leaves whole chunks
only (each chunk commits with its rejects; the next run skips what is stored).

The next chunk is read and checked in a second thread while this one is written: the checks never
touch the database, and a write mostly waits for it (PostgreSQL's ``COPY``, indexes and commit run in
the server's process, SQLite's inserts with the GIL released), so on two cores the two overlap. The
checks record into a chunk's own ``Ingestion``, which the writing thread takes over before the write.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, Table

from store.db import GrowingTable
from store.ingest.csv_chunks import CsvChunk, csv_chunks
from store.ingest.lookup import lookup
from store.ingest.reading import Progress, Raw, Records, chunks, is_csv, read_rows
from store.ingest.report import IngestReport, Interests, RejectLedger, RepeatedIds

# SQLite, a file's load (``run_chunks``' ``transaction_rows``): rows a transaction takes (several chunks)
# and the writing connection's page cache meanwhile. A chunk's rows land all over a clustered table (the
# events') and its indexes, and a commit writes (then checkpoints) every page its transaction changed: a
# 200,000-row chunk into a 4M-event table changes ≈ 140,000 pages, five such chunks in one transaction
# change most of them once. A larger cache than the store's 256 MB keeps more of those pages before they
# spill to the log mid-transaction, but costs its size in the load's peak: with 1 GB a single 20M-event
# file's load peaked at 3.8 GB by 14M events (2 GB: 3.9 GB by 6.5M), against the 4 GB budget. Measured,
# 1M events into a 4M-event store, main and this alternated (load 6-10): 33.5 / 35.4 CPU s with a
# transaction per chunk, 26.6 / 31.1 with these, the same 1.9 GB peak; with 1 GB, into 5M: 38.3 / 37.3
# against 28.7 / 28.1.
FILE_TRANSACTION_ROWS = 1_000_000
FILE_CACHE_KIB = 512 * 1024
# ... but a transaction commits after the chunk that kept it open this long, whatever its rows: other writers
# (the service's intake, a scoring run) wait for it, and SQLite's busy timeout (60 s) must not run out.
FILE_TRANSACTION_SECONDS = 20.0


@dataclass
class Ingestion:
    """What one file's ingestion accumulates: the report, its reject ledger, the interests it shows and
    the ids it accepted (``None``: a kind whose ids may repeat)."""

    report: IngestReport
    rejects: RejectLedger = field(init=False)
    interests: Interests = field(default_factory=Interests)
    ids: RepeatedIds | None = None
    # The ids the current chunk's write stored, when the steps know them exactly (every row they staged
    # was inserted): ``Records``' report then takes them instead of looking them up (None: look up).
    stored: list[str] | None = None
    # A chunk's time, stamped on the rows it writes and its rejects: taken when the chunk is checked, so
    # the checks may stamp rows ahead of the write (each chunk still has its own, later than the one before).
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.rejects = RejectLedger(self.report)

    def part(self) -> Ingestion:
        """An empty ``Ingestion`` of the same file for one chunk's checks, made beside another chunk's
        write (each thread records into its own); ``take`` adds it to this one."""
        report = IngestReport(kind=self.report.kind, source=self.report.source)
        ids = None if self.ids is None else RepeatedIds(self.ids.id_name, self.ids.which_wins)
        return Ingestion(report, ids=ids)

    def take(self, part: Ingestion) -> None:
        """Add what ``part`` (from ``part()``) recorded: counts, rejects (pending ones are written with the
        chunk that takes them), ids and interests."""
        self.report.add(part.report)
        self.rejects.pending.extend(part.rejects.pending)
        if self.ids is not None and part.ids is not None:
            self.ids.hashes.extend(part.ids.hashes)
        self.interests.merge(part.interests)


class ChunkSteps(Protocol):
    """What differs between leads, events and stage updates: how a chunk is checked and written."""

    def prepare(self, rows: list[Raw], run: Ingestion) -> Any:
        """Validate the chunk's readable rows (rejecting bad ones) outside any transaction; with
        ``run_chunks(columnar_csv=True)`` a CSV chunk may come as ``CsvChunk`` columns instead."""
        ...

    def write(self, conn: Connection, prepared: Any, now: datetime, run: Ingestion) -> None:
        """Look up and store the prepared rows inside the chunk's transaction."""
        ...


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during a bulk load.

    Rows are plain dicts and tuples without reference cycles (reference counting frees them), but
    each chunk allocates millions of container objects, and the collector rescanning them cost
    about as much as the validation itself (measured: 500k rows validate in 2.5 s instead of 4.5 s).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run_chunks(
    engine: Engine,
    path: Path | Records,
    kind: str,
    table: Table,
    steps: ChunkSteps,
    *,
    chunk_size: int,
    progress: Progress | None,
    stamped: tuple[str, str] | None = None,
    ids: RepeatedIds | None = None,
    also_written_to: tuple[Table, ...] = (),
    columnar_csv: bool = False,
    growth: GrowingTable | None = None,
    first_halved: bool = False,
    transaction_rows: int = 0,
) -> IngestReport:
    """Ingest ``path`` chunk by chunk with ``steps``; returns the report with rejects in file order and,
    with ``ids``, notes on an empty file and repeated ids.

    For ``Records`` the report also says which ids this call wrote (``written``): ``stamped`` names the
    table's id column and the column a write stamps with the chunk's time (in ``table`` and in the tables
    ``also_written_to``, where some rows may go: anonymous visitors' events). ``columnar_csv``: ``steps``
    take a CSV file's chunks as Polars columns (``CsvChunk``) where Polars reads them as the ``csv``
    module would. ``growth``: the table's statistics upkeep, kept across calls by a caller that
    ingests again and again (the service); by default one for this call. ``first_halved``: a file's
    first chunk is read, checked and written as two (``_halves``), for kinds whose report and result do
    not depend on where chunks end (events: the first of a repeated id is kept either way; of leads
    repeated within a chunk the last is inserted, across chunks it is inserted then updated).
    ``transaction_rows``: on SQLite, a file's chunks are written in transactions of at least this many
    rows, with a page cache of ``FILE_CACHE_KIB`` (elsewhere, and for ``Records``, a transaction a chunk)."""
    path = path if isinstance(path, Records) else Path(path)
    source = path.source if isinstance(path, Records) else str(path)
    run = Ingestion(IngestReport(kind=kind, source=source), ids=ids)
    if isinstance(path, Records) and stamped is not None:
        run.report.written = set()
    growth = growth or GrowingTable(engine, table.name)
    if isinstance(path, Records):  # a service batch is one chunk: nothing to overlap, no thread to start
        checked = _checked(_chunks(path, chunk_size, columnar_csv), steps, run)
    else:
        first = _halves(chunk_size) if first_halved else ()
        checked = _ahead(_checked(_chunks(path, chunk_size, columnar_csv, first), steps, run))
    grouped = engine.dialect.name == "sqlite" and transaction_rows > 0 and not isinstance(path, Records)
    transactions = _Transactions(engine, transaction_rows, FILE_CACHE_KIB) if grouped else _Transactions(engine)
    with gc_paused(), transactions:
        for readable, prepared, part in checked:
            now = part.now
            run.take(part)
            inserted = run.report.inserted
            conn = transactions.open()
            run.stored = None
            steps.write(conn, prepared, now, run)
            if run.report.written is not None and stamped is not None:
                if run.stored is not None:
                    run.report.written.update(run.stored)
                else:
                    for target in (table, *also_written_to):
                        run.report.written.update(_written(conn, target, stamped, readable, now))  # type: ignore[arg-type]
            run.rejects.flush(conn, now)
            transactions.wrote(len(readable))
            growth.added(run.report.inserted - inserted)  # the next chunk's look-ups are planned for the grown table
            if progress is not None:
                progress(run.report.read)
    run.report.interests = run.interests.as_list()
    run.rejects.sort()
    if ids is not None:
        ids.note(run.report)
    return run.report


class _Transactions:
    """The chunks' transactions on one connection: each chunk's own, or with ``rows`` > 0 one for as many
    chunks as it takes to write ``rows`` rows (a bulk load into a clustered table larger than a chunk:
    a commit writes every page its transaction changed, and the chunks of one transaction change many
    of the same pages). Still all or nothing: a killed load loses the open transaction's chunks, which
    the next run writes. ``cache_kib`` (SQLite): the page cache of the connection during the load, to hold
    the pages a transaction changes (spilled to the log mid-transaction otherwise) and keep them between
    transactions; set back at the end."""

    def __init__(self, engine: Engine, rows: int = 0, cache_kib: int | None = None) -> None:
        self.engine, self.rows, self.cache_kib = engine, rows, cache_kib
        self._conn: Connection | None = None
        self._cache: int | None = None  # the connection's own cache_size, set back at the end
        self._written = 0
        self._began: float | None = None  # when the open transaction began

    def __enter__(self) -> _Transactions:
        return self

    def open(self) -> Connection:
        """The connection, in the current chunk's transaction (begun if none is open)."""
        if self._conn is None:
            self._conn = self.engine.connect()
            if self.cache_kib is not None:
                self._cache = self._conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
                self._conn.exec_driver_sql(f"PRAGMA cache_size=-{int(self.cache_kib)}")
        if not self._conn.in_transaction():
            self._conn.begin()
        if self._began is None:  # (reading the cache size above has begun one already)
            self._began = time.monotonic()
        return self._conn

    def wrote(self, rows: int) -> None:
        """A chunk of ``rows`` rows was written: commit unless the transaction takes more (in rows, and
        it has been open less than ``FILE_TRANSACTION_SECONDS``)."""
        self._written += rows
        if self._conn is None or self._began is None:
            return
        if self._written >= self.rows or time.monotonic() - self._began >= FILE_TRANSACTION_SECONDS:
            self._conn.commit()
            self._written, self._began = 0, None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction():
                if kind is None:
                    conn.commit()
                else:
                    conn.rollback()
            if self._cache is not None:
                conn.exec_driver_sql(f"PRAGMA cache_size={int(self._cache)}")
        finally:
            conn.close()


def _halves(size: int) -> tuple[int, int]:
    """The first chunk's ``size`` as two chunks: nothing is written while the first chunk is read and
    checked, so a smaller one starts the writes (and their overlap with the checks) sooner. A file of
    one chunk (the demo's 200,000 events) is then written half while its other half is read and checked.
    Read as two, not read whole and cut: the second half's reading overlaps the first half's write."""
    half = max(1, (size + 1) // 2)
    return half, max(1, size - half)


def _chunks(
    path: Path | Records, size: int, columnar_csv: bool, first: Sequence[int] = ()
) -> Iterator[list[Raw] | CsvChunk]:
    if columnar_csv and is_csv(path):
        return csv_chunks(path, size, first)  # type: ignore[arg-type]
    return chunks(read_rows(path), size, first)


Checked = tuple[list[Raw] | CsvChunk, Any, Ingestion]


def _checked(chunks: Iterator[list[Raw] | CsvChunk], steps: ChunkSteps, run: Ingestion) -> Iterator[Checked]:
    """Each chunk's readable rows, what ``steps.prepare`` made of them and the chunk's own ``Ingestion``
    (its count of rows read, its rejects): no database work, so it can run ahead in another thread."""
    for chunk in chunks:
        part = run.part()
        part.report.read += len(chunk)
        readable: list[Raw] | CsvChunk
        if isinstance(chunk, CsvChunk):
            readable = chunk
            for row in chunk.unreadable:
                part.rejects.add(row, None, str(row.error))
        else:
            readable = []
            for row in chunk:
                if row.error is None:
                    readable.append(row)
                else:
                    part.rejects.add(row, None, row.error)
        yield readable, steps.prepare(readable, part), part  # type: ignore[arg-type]


Item = TypeVar("Item")
_END = object()


def _ahead(items: Iterator[Item]) -> Iterator[Item]:
    """``items``, each produced in a worker thread while the caller handles the one before (one ahead:
    bounded memory). An error producing an item is raised here, at that item."""
    with ThreadPoolExecutor(1, thread_name_prefix="leadscore-ingest") as worker:
        upcoming = worker.submit(next, items, _END)
        while (item := upcoming.result()) is not _END:
            upcoming = worker.submit(next, items, _END)
            yield item  # type: ignore[misc]


def _written(conn: Connection, table: Table, stamped: tuple[str, str], rows: list[Raw], now: datetime) -> list[str]:
    """The ids among ``rows`` whose stored row carries this chunk's time: the ones this chunk wrote."""
    id_name, stamp_name = stamped
    given = (str(row.data[id_name]) for row in rows if row.data is not None and row.data.get(id_name))
    # An id with a NUL was refused, and PostgreSQL cannot even be asked about it.
    ids = sorted({identifier for identifier in given if "\x00" not in identifier})
    found = lookup(conn, table.c[id_name], ids, [table.c[id_name]], table.c[stamp_name] == now)
    return [identifier for (identifier,) in found]
