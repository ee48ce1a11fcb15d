"""The floor of a SQLite events load on this machine: the stored rows alone written by the load's own statements.

Reads 2 × ``--rows`` events from a loaded store (say the one ``benchmarks/daily.py`` prepared), in the order
they were ingested, and writes ``--rows`` of them into the empty ``events`` table of a new store through
``store.ingest.staging`` (``encoded`` then ``merge_ignoring_stored``: the multi-row ``INSERT OR IGNORE``
statements of a load), in one transaction with the load's page cache, so nothing else a load does — reading
the CSV, validation, look-ups, machine-activity detection — is counted. Then into a copy of the loaded store
(the ids renamed): ``--rows`` untimed to warm the page cache as a load's earlier transactions have, then
``--rows`` timed, what a transaction costs at the end of a load of that size. Then into a table of the same
columns without key or indexes (a plain append: binding the values alone). Prints CPU seconds a million
rows, and for 20 million a lower bound (the empty table's rate: SQLite has one writer, and the table only
grows) and an estimate (the mean of the empty and the full table's rates).

    .venv/bin/python benchmarks/load_floor.py --store /tmp/bench1m/bench.db [--rows 1000000] [--repeat 2]
"""

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Column, MetaData, Table  # noqa: E402

from store.db import make_engine  # noqa: E402
from store.ingest.skeleton import FILE_CACHE_KIB  # noqa: E402
from store.ingest.staging import encoded, merge_ignoring_stored  # noqa: E402
from store.tables import Event  # noqa: E402

EVENTS = Event.__table__
# The events' columns, with none of its key or indexes: what binding the values costs, appended to a heap.
HEAP = Table("events_heap", MetaData(), *[Column(c.name, c.type) for c in EVENTS.columns])


def stored_rows(store: Path, rows: int) -> pl.DataFrame:
    """``rows`` stored events, in the order a load wrote them (its chunks' ``ingested_at``)."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        names = [column.name for column in EVENTS.columns]
        cursor = conn.execute(f"SELECT {', '.join(names)} FROM events ORDER BY ingested_at, event_id LIMIT ?", (rows,))
        return pl.DataFrame(cursor.fetchall(), schema=names, orient="row", infer_schema_length=None)


def timed_write(workdir: Path, frame: pl.DataFrame, heap: bool, copy_of: Path | None = None) -> float:
    """CPU seconds a million of writing half of ``frame`` in one transaction into a new store's empty events
    table (or the heap); or into a copy of the store ``copy_of`` (its ids renamed first), where the first
    half is written untimed to warm the page cache, as the load's earlier transactions have, and the
    second half is timed."""
    path = workdir / f"floor-{time.monotonic_ns()}.db"
    half = frame.height // 2
    parts = [frame.head(half)]
    if copy_of is not None:
        shutil.copy(copy_of, path)
        renamed = frame.with_columns(("floor-" + pl.col("event_id")).alias("event_id"))
        parts = [renamed.head(half), renamed.slice(half)]
    engine = make_engine(f"sqlite:///{path}")
    table = HEAP if heap else EVENTS
    try:
        with engine.connect() as conn:
            if heap:
                HEAP.create(conn)
                conn.commit()
            conn.exec_driver_sql(f"PRAGMA cache_size=-{FILE_CACHE_KIB}")
            conn.commit()
            for part in parts:
                started = time.process_time()
                with conn.begin():
                    written = merge_ignoring_stored(conn, table, encoded("sqlite", table, part))  # type: ignore[arg-type]
                cpu_s = time.process_time() - started  # the commit included
                assert written == part.height, (written, part.height)
        return cpu_s / (parts[-1].height / 1e6)
    finally:
        engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="a loaded SQLite store")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows a timed transaction (a load's: 1M)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    frame = stored_rows(args.store, 2 * args.rows)
    with sqlite3.connect(f"file:{args.store}?mode=ro", uri=True) as conn:
        stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    cases = {
        "empty events table (key + 3 indexes)": (False, None),
        f"events table of {stored / 1e6:.0f}M (a copy of the store)": (False, args.store),
        "plain append (no key, no index)": (True, None),
    }
    figures: dict[str, list[float]] = {label: [] for label in cases}
    with tempfile.TemporaryDirectory(prefix="leadscore-floor-", dir=args.store.parent) as scratch:
        for _ in range(args.repeat):
            for label, (heap, copy_of) in cases.items():
                figures[label].append(timed_write(Path(scratch), frame, heap, copy_of))
    print(f"{args.rows:,} stored events written by the load's statements, one transaction, {args.repeat}× each")
    best = {label: min(runs) for label, runs in figures.items()}
    for label, runs in figures.items():
        print(f"  {label:44} CPU s a million: {', '.join(f'{s:.1f}' for s in runs)}")
    empty, full, _ = best.values()
    print(
        f"20M events into an empty store, the inserts alone: at least {empty * 20:.0f} CPU s (the empty table's"
        f" rate: the table only grows; one writer), ≈ {(empty + full) / 2 * 20:.0f} (the mean of the two rates)"
    )


if __name__ == "__main__":
    main()
