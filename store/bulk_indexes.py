"""Indexes a first bulk load of a table leaves out and builds once after it.

- ``leads``: the console's search indexes (``lower(field)``, ``store.console_tables``). Each lead of a load
  adds an entry at a random place in each of the four, which cost a first load of 1M demo leads more than
  the rest of its inserts (PostgreSQL's ``COPY``: 15.2 s with them against 4.2 without, and 3.1 s to build
  them after; SQLite: 16.5 CPU s against 7.1, and 4.1 after).
- ``events``, on PostgreSQL: the primary key ``(lead_key, occurred_at, event_id)``. A chunk's rows go to
  every lead's part of it, so with a few million events stored each row's entry reads and dirties a page
  of its own: 3M demo events into a 20M-event store took 45–47 s and 42–45 server CPU s with it, 27 s and
  24 without, and building it over the 23M rows after took 9.5 s. The unique ``event_id`` index stays: it
  is what keeps a load idempotent. (SQLite's events table is clustered on that key: nothing to leave out.)

A first bulk load is a load of files of at least ``BULK_BYTES`` in all into an empty table. A load killed in
between leaves the indexes dropped, and reads slow but right, until the next load of a file (of leads or
events) builds them first.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, Index, Table, exists, select, text
from sqlalchemy.schema import CreateIndex, DropIndex

from store.console_tables import LEAD_SEARCH_INDEXES
from store.tables import Event

BULK_BYTES = 16 << 20
"""Files at least this large in all (≈ 75,000 demo leads, 110,000 demo events) into an empty table are a
first bulk load."""


@dataclass(frozen=True)
class _Deferrable:
    """An index a first bulk load of ``table`` may leave out: its name in the catalog, how to drop and build it."""

    table: Table
    name: str
    drop: Callable[[Connection], object]
    build: Callable[[Connection], object]


def _index(index: Index) -> _Deferrable:
    return _Deferrable(
        index.table,  # type: ignore[arg-type]
        str(index.name),
        lambda conn: conn.execute(DropIndex(index, if_exists=True)),
        lambda conn: conn.execute(CreateIndex(index, if_not_exists=True)),
    )


def _primary_key(table: Table) -> _Deferrable:
    """PostgreSQL's primary key of ``table``, under PostgreSQL's default name for it."""
    name, columns = f"{table.name}_pkey", ", ".join(column.name for column in table.primary_key.columns)

    def target(conn: Connection) -> str:
        return conn.dialect.identifier_preparer.format_table(table)

    return _Deferrable(
        table,
        name,
        lambda conn: conn.exec_driver_sql(f"ALTER TABLE {target(conn)} DROP CONSTRAINT IF EXISTS {name}"),
        lambda conn: conn.exec_driver_sql(f"ALTER TABLE {target(conn)} ADD CONSTRAINT {name} PRIMARY KEY ({columns})"),
    )


_EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
_DEFERRABLE = {
    "sqlite": [_index(index) for index in LEAD_SEARCH_INDEXES],
    "postgresql": [_index(index) for index in LEAD_SEARCH_INDEXES] + [_primary_key(_EVENTS)],
}


def _deferrable(dialect: str, table: str | None = None) -> list[_Deferrable]:
    """The indexes a first bulk load may leave out on ``dialect``, of ``table`` (None: of every table)."""
    return [one for one in _DEFERRABLE.get(dialect, []) if table is None or one.table.name == table]


@contextmanager
def indexes_deferred(engine: Engine, table: str, sources: Sequence[Path]) -> Iterator[bool]:
    """Around a load of ``table`` from the files ``sources`` (none: records, never deferred): drop the table's
    deferrable indexes when the load is a first bulk load, build them again afterwards, even when the load
    fails; yields whether they were dropped. A file's load first builds any that a killed load left dropped,
    of any table (records, the service's batches, need no index to be stored and skip the catalog read)."""
    if not sources:
        yield False
        return
    build_deferred_indexes(engine)
    deferred = _deferrable(engine.dialect.name, table)
    if (
        not deferred
        or sum(source.stat().st_size for source in sources) < BULK_BYTES
        or not _empty(engine, deferred[0].table)
    ):
        yield False
        return
    with engine.begin() as conn:
        for one in deferred:
            one.drop(conn)
    try:
        yield True
    finally:
        build_deferred_indexes(engine, table)


def build_deferred_indexes(engine: Engine, table: str | None = None) -> None:
    """Build the deferrable indexes (of ``table``; None: of every table) that do not exist. None to build: a
    catalog read, no lock taken; else the tables are locked against each other's builders first (two loads
    building the same primary key: the second finds it built)."""
    with engine.begin() as conn:
        if not (missing := _missing(conn, table)):
            return
        if conn.dialect.name == "postgresql":
            for table_name in sorted({one.table.name for one in missing}):
                conn.exec_driver_sql(
                    f"LOCK TABLE {conn.dialect.identifier_preparer.quote(table_name)} IN SHARE ROW EXCLUSIVE MODE"
                )
            missing = _missing(conn, table)  # another builder may have built them while this one waited
        for one in missing:
            one.build(conn)


def missing_deferred_indexes(engine: Engine, table: str | None = None) -> list[str]:
    """The names of the deferrable indexes (of ``table``; None: of every table) the store lacks, read from its
    catalog (SQLAlchemy's inspector does not list SQLite's indexes on expressions)."""
    with engine.connect() as conn:
        return [one.name for one in _missing(conn, table)]


def _missing(conn: Connection, table: str | None) -> list[_Deferrable]:
    wanted = _deferrable(conn.dialect.name, table)
    if conn.dialect.name == "postgresql":
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
    present = set(conn.execute(text(sql)).scalars())
    return [one for one in wanted if one.name not in present]


def _empty(engine: Engine, table: Table) -> bool:
    with engine.connect() as conn:
        return not conn.execute(select(exists().select_from(table))).scalar_one()
