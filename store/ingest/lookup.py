"""Batched ``IN (…)`` look-ups that respect each database's bind-parameter limits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, any_, bindparam, select
from sqlalchemy.dialects import postgresql

_IN_BATCH = 5_000  # bound parameters per IN (…) look-up; well under SQLite's and PostgreSQL's limits


def in_list(conn: Connection, column: Any) -> tuple[Any, int]:
    """``column IN (:wanted)`` and a batch size: one array parameter on PostgreSQL (psycopg re-parses a
    statement with thousands of placeholders in Python), expanded parameters on SQLite (its limit is
    32766)."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam("wanted", type_=postgresql.ARRAY(column.type))), 50_000
    return column.in_(bindparam("wanted", expanding=True)), _IN_BATCH


def lookup(
    conn: Connection, column: Any, wanted: Sequence[Any], columns: Sequence[Any], where: Any = None
) -> list[Any]:
    """``SELECT columns WHERE column IN (wanted)`` in batches that respect the bind-parameter limits."""
    rows: list[Any] = []
    condition, batch = in_list(conn, column)
    stmt = select(*columns).where(condition)
    if where is not None:
        stmt = stmt.where(where)
    for start in range(0, len(wanted), batch):
        rows.extend(conn.execute(stmt, {"wanted": list(wanted[start : start + batch])}).all())
    return rows
