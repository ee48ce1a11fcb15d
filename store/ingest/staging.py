"""Bulk append into a staging table, then one set-based merge that skips stored ids.

The rows arrive as tuples already in their stored form (epoch microseconds, JSON text, 0/1 flags), in
the order the merge must keep: the first row of a repeated ``event_id`` in that order is the one stored,
as with a row-by-row ``INSERT … ON CONFLICT DO NOTHING``. SQLite appends with an ``executemany`` of
tuples into a temporary table without indexes; PostgreSQL with ``COPY … FROM STDIN`` (CSV). The merge
``INSERT … SELECT … ORDER BY seq ON CONFLICT DO NOTHING`` runs inside the chunk's transaction, so a
killed load leaves whole chunks only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from sqlalchemy import Connection, Table

_STAGE = "ingest_stage"


def merge_ignoring_stored(conn: Connection, table: Table, names: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> int:
    """Append ``rows`` (values for ``names``, in merge order) and merge them into ``table``; returns
    how many were inserted (rows whose unique keys were stored, or repeated earlier, are skipped)."""
    if not rows:
        return 0
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in names)
    target = quote(table.name)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {_STAGE} ON COMMIT DROP AS SELECT {columns} FROM {target} WITH NO DATA"
        )
        conn.exec_driver_sql(f"ALTER TABLE {_STAGE} ADD COLUMN seq bigserial")
        _copy_csv(conn, f"COPY {_STAGE} ({columns}) FROM STDIN (FORMAT csv)", names, rows)
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{_STAGE}")
        conn.exec_driver_sql(f"CREATE TEMP TABLE {_STAGE} AS SELECT {columns} FROM {target} WHERE 0")
        marks = ", ".join("?" * len(names))
        conn.exec_driver_sql(f"INSERT INTO temp.{_STAGE} ({columns}) VALUES ({marks})", list(rows))
    else:
        raise NotImplementedError(f"staged merges support sqlite and postgresql, not {conn.dialect.name!r}")
    order = "seq" if conn.dialect.name == "postgresql" else "rowid"
    merged = conn.exec_driver_sql(
        f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {_STAGE} WHERE true ORDER BY {order} "
        "ON CONFLICT DO NOTHING"
    )
    inserted = int(merged.rowcount)
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"DROP TABLE temp.{_STAGE}")
    return inserted


def _copy_csv(conn: Connection, statement: str, names: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """``COPY`` the rows as CSV written by Polars (None → unquoted empty = NULL; "" stays quoted)."""
    columns = list(zip(*rows, strict=True))
    frame = pl.DataFrame({name: list(values) for name, values in zip(names, columns, strict=True)}, strict=False)
    data = frame.write_csv(include_header=False).encode()
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
        copy.write(data)
