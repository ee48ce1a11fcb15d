"""Set-based appends that skip stored ids: the bulk write of the columnar ingestion path.

The rows arrive as a Polars frame already in their stored form (epoch microseconds, JSON text, flags),
without repeated ids and sorted by the target's clustered key, so the B-tree (SQLite's WITHOUT ROWID
table, PostgreSQL's indexes) is appended to instead of written at scattered pages. SQLite takes an
``executemany`` of multi-row ``INSERT OR IGNORE … VALUES (…), (…), …`` over the frame's
values laid out row after row (converted by Polars a column at a time, not per row in Python): a
staging table would only write and read the chunk once more. PostgreSQL
``COPY``s the chunk (CSV written by Polars, ``store.bulk.copy_rows``) straight into the table when the
caller has looked its ids up (none stored: a first load); should one be stored after all (a concurrent
writer, an id the caller's look-up did not see), the unique index refuses the ``COPY``, its savepoint is
rolled back, and the chunk goes the general way: ``COPY`` into the session's staging table
(``store.bulk.stage_rows``, shared with the scoring writes), then one ``INSERT … SELECT … ORDER BY
ctid ON CONFLICT DO NOTHING`` in the frame's order (half the server's work of a first load was that
second write). Both run inside the chunk's transaction, so a killed load leaves whole chunks only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl
import polars.selectors as cs
from psycopg.errors import UniqueViolation
from sqlalchemy import Connection, Table

from store.bulk import copy_rows, stage_rows

_NULL_AS_NAN: dict[object, object] = {None: math.nan}  # ``get(value, value)``: NaN for None, else the value
SQLITE_ROWS = 250  # rows a SQLite INSERT statement takes (250 × 19 columns: well below its 32,766 variables)


@dataclass(frozen=True)
class Encoded:
    """A frame for ``merge_ignoring_stored`` with the work that needs no connection done (``encoded``):
    on SQLite the statements' parameters, so a caller may make them in the thread that checks the next
    chunk instead of the one holding the transaction (≈ 1 CPU s per million events)."""

    frame: pl.DataFrame
    names: list[str] = field(default_factory=list)  # SQLite: the columns bound
    batches: list[tuple[object, ...]] = field(default_factory=list)  # SQLite: ``SQLITE_ROWS`` rows each
    rest: tuple[object, ...] = ()  # SQLite: the rows left over, for one statement more


def encoded(dialect: str, table: Table, frame: pl.DataFrame) -> Encoded:
    """``frame`` (columns named as ``table``'s, in merge order) ready for ``merge_ignoring_stored`` on
    ``dialect`` (the engine's ``dialect.name``).

    The parameters are laid out row after row in one flat list, each column's ``to_list`` assigned to
    every ``width``-th slot: Polars converts a column at a time far cheaper than ``DataFrame.rows``
    converts cell by cell (1M demo events: ≈ 0.5 CPU s less)."""
    if dialect != "sqlite" or frame.is_empty():
        return Encoded(frame)
    frame = _sqlite_bindable(table, frame)
    width, height = frame.width, frame.height
    flat: list[object] = [None] * (width * height)
    for position, column in enumerate(frame.get_columns()):
        flat[position::width] = _bound(column)
    step, whole = SQLITE_ROWS * width, (height - height % SQLITE_ROWS) * width
    batches = [tuple(flat[start : start + step]) for start in range(0, whole, step)]
    return Encoded(frame, frame.columns, batches, tuple(flat[whole:]))


def merge_ignoring_stored(conn: Connection, table: Table, frame: pl.DataFrame | Encoded, *, fresh: bool = False) -> int:
    """Append ``frame`` (columns named as ``table``'s, in merge order; or ``encoded`` for this dialect) to
    ``table``; returns how many rows were inserted (rows whose unique keys were stored are skipped).
    ``fresh``: the caller expects none of the frame's keys to be stored and none to repeat (PostgreSQL
    then tries a plain ``COPY`` first)."""
    ready = frame if isinstance(frame, Encoded) else encoded(conn.dialect.name, table, frame)
    frame = ready.frame
    if frame.is_empty():
        return 0
    quote = conn.dialect.identifier_preparer.quote
    target = conn.dialect.identifier_preparer.format_table(table)  # with its schema: an attached file's
    if conn.dialect.name == "sqlite":
        return _sqlite_insert(conn, target, [quote(name) for name in ready.names], ready)
    if conn.dialect.name != "postgresql":
        raise NotImplementedError(f"staged merges support sqlite and postgresql, not {conn.dialect.name!r}")
    names = [quote(name) for name in frame.columns]
    if fresh and _copied(conn, target, names, frame):
        return frame.height
    staged = stage_rows(conn, target, names, frame)
    columns = ", ".join(names)
    merged = conn.exec_driver_sql(
        f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {staged} ORDER BY ctid ON CONFLICT DO NOTHING"
    )
    return int(merged.rowcount)


def _sqlite_bindable(table: Table, frame: pl.DataFrame) -> pl.DataFrame:
    """The frame as ``sqlite3`` binds it cheapest: only exact ints, floats and texts skip its adapter
    look-up, so flags go as 0/1 and columns null in every row (and without a default) are left out:
    stored NULL all the same, and a plain event has seven of them. Measured on 1M events: 8.4 CPU s
    of ``executemany`` instead of 12."""
    frame = frame.with_columns(cs.boolean().cast(pl.Int64))
    nulls = frame.null_count().row(0)
    return frame.select(
        name
        for name, null in zip(frame.columns, nulls, strict=True)
        if null < frame.height or table.c[name].server_default is not None
    )


def _bound(column: pl.Series) -> list[object]:
    """``column``'s values as ``sqlite3`` binds them cheapest: a NULL of a number or text column as NaN,
    which SQLite binds as NULL (``sqlite3_bind_double``), instead of ``None``, which costs ``sqlite3``
    an adapter look-up (≈ 0.3 µs; a demo event has six: ≈ 2 CPU s a million events, in the writing
    thread). Swapped by a dict's ``get`` mapped over the list, not by a loop in Python."""
    values = column.to_list()
    if column.has_nulls() and (column.dtype.is_numeric() or column.dtype == pl.String):
        values = list(map(_NULL_AS_NAN.get, values, values))
    return values


def _sqlite_insert(conn: Connection, target: str, names: list[str], rows: Encoded) -> int:
    """``INSERT OR IGNORE … VALUES (…), (…), …``, ``SQLITE_ROWS`` rows a statement (the rest in one more): a
    statement per row cost 1.5–1.7× the CPU (200,000 leads into the leads table and its indexes: 1.73 CPU s
    against 1.02, best of five), the binding and stepping of each row's statement.

    ``OR IGNORE``, not ``ON CONFLICT DO NOTHING``: a statement that may abort halfway (a NOT NULL
    violation aborts under ``DO NOTHING``) keeps a statement journal, a copy of every page it is about
    to change, and a multi-row insert into the events' ``event_id`` index changes a page per row (a
    temporary file: 2M ``pwrite`` calls, 2 of the 4.3 CPU s of 1M events). The frames fill every NOT
    NULL column, so the two skip the same rows: those whose unique keys are stored. A table with
    triggers that may abort still journals (the events' change log: ``change_log.counted_per_lead``)."""
    width = len(names)
    head = f"INSERT OR IGNORE INTO {target} ({', '.join(names)}) VALUES "
    marks = f"({', '.join('?' * width)})"
    inserted = 0
    if rows.batches:
        statement = head + ", ".join([marks] * SQLITE_ROWS)
        inserted += conn.exec_driver_sql(statement, rows.batches).rowcount
    if rows.rest:
        statement = head + ", ".join([marks] * (len(rows.rest) // width))
        inserted += conn.exec_driver_sql(statement, [rows.rest]).rowcount
    return int(inserted)


def _copied(conn: Connection, target: str, names: list[str], frame: pl.DataFrame) -> bool:
    """``COPY`` the frame in a savepoint; False (nothing written) when a unique index refused a row."""
    savepoint = conn.begin_nested()
    try:
        copy_rows(conn, target, names, frame)
    except UniqueViolation:
        savepoint.rollback()
        return False
    savepoint.commit()
    return True
