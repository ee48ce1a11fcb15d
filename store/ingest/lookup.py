"""Batched ``IN (…)`` look-ups that respect each database's bind-parameter limits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, String, bindparam, cast, func, literal_column, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

from store.bulk import json_text


class _JsonList(TypeDecorator[list[Any]]):
    """A list bound as one JSON text parameter, which SQLite's ``json_each`` reads back as rows."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: list[Any] | None, dialect: Any) -> str | None:
        return None if value is None else json_text(value)


def in_list(conn: Connection, column: Any) -> tuple[Any, int]:
    """``column IN (:wanted)`` and a batch size. The list goes as one JSON text parameter (``orjson``, in C),
    read back as rows by ``json_each`` (SQLite) or ``json_array_elements_text`` (PostgreSQL): thousands of
    expanded placeholders cost SQLAlchemy a compile per batch (2× the time on SQLite), and psycopg dumps a
    Python list as an array parameter element by element in Python (≈ 30 % of a 200k-lead load's client
    CPU on PostgreSQL went to its look-ups' arrays)."""
    wanted = bindparam("wanted", type_=_JsonList())
    if conn.dialect.name == "postgresql":
        elements = func.json_array_elements_text(cast(wanted, postgresql.JSON)).table_valued("value")
        return column.in_(select(cast(elements.c.value, column.type))), 50_000
    each = select(literal_column("value")).select_from(func.json_each(wanted))
    return column.in_(each), 50_000


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
