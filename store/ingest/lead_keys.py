"""Where a chunk's leads are stored: their keys and creation times (for the interests and visitor claims
they show), the keys of the leads a chunk appended, and the stored values a re-ingest compares with, all
as Polars frames read straight from the driver's cursor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import BigInteger, Connection, Text, cast, func, select, type_coerce

from store.ingest.lead_columns import SCHEMA, TIME_FIELDS
from store.ingest.lookup import lookup_frame, raw_frame
from store.ingest.skeleton import Ingestion
from store.ingest.visitors import Visitors
from store.tables import Lead, from_micros, to_micros

_LEAD_TABLE = Lead.__table__
KEYS: dict[str, Any] = {"lead_id": pl.String, "key": pl.Int64, "at": pl.Int64}  # ``at``: created, epoch µs
CREATED = type_coerce(_LEAD_TABLE.c.created_at, BigInteger)


def stored_keys(conn: Connection, lead_ids: list[str], now: datetime) -> pl.DataFrame:
    """The stored leads' keys and creation times (``KEYS``; ``now`` for a lead stored without one)."""
    table = _LEAD_TABLE.c
    found = lookup_frame(conn, table.lead_id, lead_ids, [table.lead_id, table.key, CREATED], KEYS)
    return found.with_columns(pl.col("at").fill_null(to_micros(now)))


def claim(run: Ingestion, lines: pl.DataFrame, visitors: pl.DataFrame, keys: pl.DataFrame) -> Visitors:
    """Interests from the leads' creation on; a lead row's ``anonymous_ids`` (list column) claims those
    visitors for the lead, from its arrival on (of two leads claiming one visitor, the earlier created
    wins, then the lower key); returns the links to write. ``lines``, ``visitors``: ``CLAIMS`` pairs;
    ``keys``: the leads' keys and creation times (``KEYS``)."""
    links = Visitors()
    if lines.is_empty() and visitors.is_empty():
        return links
    interests = lines.join(keys, on="lead_id")
    run.interests.add_pairs(interests["key"].to_list(), interests["value"].to_list(), interests["at"].to_list())
    claimed = visitors.join(keys, on="lead_id", maintain_order="left").sort("key", maintain_order=True)
    for anonymous_id, key, at in claimed.select("value", "key", "at").iter_rows():
        links.link(anonymous_id, key, from_micros(at), source="lead row")
    return links


def appended_keys(conn: Connection, appended: pl.Series, inserted: int, last_key: int, now: datetime) -> pl.DataFrame:
    """The keys (``KEYS``) of the leads this chunk inserted, of the lead ids it ``appended`` in this order
    above ``last_key``, the largest key before. SQLite numbers a new row one above the largest key, and
    this transaction has held the write lock since its first insert: when every row went in, they took
    the keys just below the largest one now, in order. Otherwise (and on PostgreSQL, whose sequence
    other sessions share) they are read back: keys above ``last_key`` that carry this chunk's time."""
    table = _LEAD_TABLE.c
    if conn.dialect.name == "sqlite" and inserted == len(appended):
        largest = conn.execute(select(func.coalesce(func.max(table.key), 0))).scalar_one()
        first = largest - inserted + 1
        keys = pl.int_range(first, largest + 1, dtype=pl.Int64, eager=True)
        return pl.DataFrame({"lead_id": appended, "key": keys}).with_columns(at=pl.lit(to_micros(now), dtype=pl.Int64))
    query = select(table.lead_id, table.key, CREATED).where(table.key > last_key, table.created_at == now)
    return raw_frame(conn, query, KEYS)


def stored_frame(conn: Connection, lead_ids: list[str], names: list[str]) -> pl.DataFrame:
    """The stored leads of these ids: their id, key and creation time (``KEYS``), the fields ``names`` and
    the attributes' JSON text, in the columns' form (``lead_columns.SCHEMA``: epoch microseconds) without
    converting a value in Python."""
    table = _LEAD_TABLE.c
    columns = [type_coerce(table[name], BigInteger) if name in TIME_FIELDS else table[name] for name in names]
    schema = {**KEYS, **{name: SCHEMA[name] for name in (*names, "attributes")}}
    wanted = [table.lead_id, table.key, CREATED, *columns, cast(table.attributes, Text)]
    return lookup_frame(conn, table.lead_id, lead_ids, wanted, schema)
