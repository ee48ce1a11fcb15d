"""Set-based appends that skip stored ids: the bulk write of the columnar ingestion path.

The rows arrive as a Polars frame already in their stored form (epoch microseconds, JSON text, flags),
without repeated ids and sorted by the target's clustered key, so the B-tree (SQLite's WITHOUT ROWID
table, PostgreSQL's indexes) is appended to instead of written at scattered pages. SQLite takes one
``executemany`` of ``INSERT … ON CONFLICT DO NOTHING`` over the frame's row tuples (built by Polars,
not per row in Python): a staging table would only write and read the chunk once more. PostgreSQL
``COPY``s the chunk (CSV written by Polars) into a temporary table and merges it with one
``INSERT … SELECT … ORDER BY seq ON CONFLICT DO NOTHING``. Both run inside the chunk's transaction, so a
killed load leaves whole chunks only.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import Connection, Table

_STAGE = "ingest_stage"


def merge_ignoring_stored(conn: Connection, table: Table, frame: pl.DataFrame) -> int:
    """Append ``frame`` (columns named as ``table``'s, in merge order) to ``table``; returns how many rows
    were inserted (rows whose unique keys were stored are skipped)."""
    if frame.is_empty():
        return 0
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in frame.columns)
    target = quote(table.name)
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" * frame.width)
        statement = f"INSERT INTO {target} ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING"
        return int(conn.exec_driver_sql(statement, frame.rows()).rowcount)
    if conn.dialect.name != "postgresql":
        raise NotImplementedError(f"staged merges support sqlite and postgresql, not {conn.dialect.name!r}")
    conn.exec_driver_sql(f"CREATE TEMP TABLE {_STAGE} ON COMMIT DROP AS SELECT {columns} FROM {target} WITH NO DATA")
    conn.exec_driver_sql(f"ALTER TABLE {_STAGE} ADD COLUMN seq bigserial")
    _copy_csv(conn, f"COPY {_STAGE} ({columns}) FROM STDIN (FORMAT csv)", frame)
    merged = conn.exec_driver_sql(
        f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {_STAGE} ORDER BY seq ON CONFLICT DO NOTHING"
    )
    return int(merged.rowcount)


def _copy_csv(conn: Connection, statement: str, frame: pl.DataFrame) -> None:
    """``COPY`` the frame as CSV written by Polars (None → unquoted empty = NULL; "" stays quoted)."""
    data = frame.write_csv(include_header=False).encode()
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
        copy.write(data)
