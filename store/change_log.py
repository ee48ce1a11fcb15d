"""The event log's change log: a per-lead generation counter the database bumps on every change.

A columnar copy of the events (``store/event_cache.py``) stays exact only if it learns of every
insert, update and delete, whoever makes it (an ingest, the service, a hand-written SQL fix). So the
database counts them itself, in the writing transaction: triggers on ``events`` bump
``event_generations`` for each lead a statement touched. SQLite runs row triggers; PostgreSQL runs
statement triggers over transition tables (one set-based upsert per ``COPY`` or merge, so bulk
ingestion pays once per statement, not once per row).

A PostgreSQL statement that touches many leads of one block of ``BLOCK_KEYS`` keys (a bulk load's
chunk: thousands) bumps one counter for the block instead, kept under the negative key
``-1 - block`` of the same table: upserting a counter per lead was half the server's work of a
``COPY`` into ``events`` (≈ 126,000 upserts per 200,000-event chunk), and a reader re-reads such a
block whole anyway. Readers take both through ``generations_query`` / ``generations_params``: a
changed block counter means "any lead of the block may have changed", unless ``event_block_leads``
still holds every bump in between (the leads each bump touched in the block, one row per bump, the
last ``BLOCK_LOG_KEEP`` per block): a day's increment that bumps a block is then re-read lead by lead.

The triggers are installed on first use together with a fresh random *epoch*. Changes made while a
trigger was missing went uncounted, so a missing trigger means a new epoch, and every cache file of
an older epoch is ignored. ``TRUNCATE`` (PostgreSQL) clears the epoch for the same reason.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import polars as pl
from sqlalchemy import Connection, Engine, text

from store.reader import read_frame

GENERATIONS = "event_generations"
BLOCK_LEADS_LOG = "event_block_leads"
EPOCH = "event_mirror_epoch"

_SQLITE_TRIGGERS = {
    "event_generations_insert": "AFTER INSERT ON events BEGIN {new} END",
    "event_generations_update": "AFTER UPDATE ON events BEGIN {old} {new} END",
    "event_generations_delete": "AFTER DELETE ON events BEGIN {old} END",
}
_SQLITE_BUMP = (
    f"INSERT INTO {GENERATIONS} (lead_key, generation) VALUES ({{row}}.lead_key, 1) "
    "ON CONFLICT (lead_key) DO UPDATE SET generation = generation + 1;"
)

_SQLITE_INSERT_TRIGGER = "event_generations_insert"
SQLITE_BULK_ROWS = 10_000
"""Rows an insert must bring for ``counted_per_lead`` to replace the row trigger: below, the trigger costs
less than the schema change (which every connection re-reads)."""

BLOCK_KEYS = 16_384
"""Lead keys per block counter: the event cache's files hold one block each."""
BLOCK_LEADS = 1_024
"""Leads of one block a PostgreSQL statement must touch for the block's counter to be bumped instead."""
BLOCK_LOG_KEEP = 16
"""Bumps of a block whose touched leads are kept: a reader further behind (a bulk load) re-reads the block."""

_PG_FUNCTION = "leadscore_event_generations"
_PG_TRIGGERS = {
    "event_generations_insert": "AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows",
    "event_generations_update": "AFTER UPDATE ON events REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "event_generations_delete": "AFTER DELETE ON events REFERENCING OLD TABLE AS old_rows",
    "event_generations_truncate": "AFTER TRUNCATE ON events",
}
# One upsert per statement, each counter once (ON CONFLICT may not touch a row twice), in key order so
# that two concurrent writers lock the shared counters in the same order (no deadlock between them): the
# blocks with at least BLOCK_LEADS touched leads by their block counter, the other leads one by one. Each
# bumped block's touched leads go to the log under the generation the bump gave it (a counter restarted
# by hand overwrites its old rows), and its rows older than the last BLOCK_LOG_KEEP bumps are dropped.
_PG_BUMP = f"""
    WITH touched AS MATERIALIZED ({{leads}}),
    busy AS (
      SELECT lead_key / {BLOCK_KEYS} AS block, to_json(array_agg(lead_key)) AS lead_keys
      FROM touched GROUP BY 1 HAVING count(*) >= {BLOCK_LEADS}
    ),
    bumped AS (
      INSERT INTO {GENERATIONS} AS g (lead_key, generation)
      SELECT counter, 1 FROM (
        SELECT -1 - block AS counter FROM busy
        UNION ALL
        SELECT lead_key FROM touched WHERE lead_key / {BLOCK_KEYS} NOT IN (SELECT block FROM busy)
      ) AS counters ORDER BY counter ON CONFLICT (lead_key) DO UPDATE SET generation = g.generation + 1
      RETURNING g.lead_key, g.generation
    ),
    logged AS (
      INSERT INTO {BLOCK_LEADS_LOG} (block, generation, lead_keys)
      SELECT busy.block, bumped.generation, busy.lead_keys FROM busy JOIN bumped ON bumped.lead_key = -1 - busy.block
      ON CONFLICT (block, generation) DO UPDATE SET lead_keys = excluded.lead_keys
    )
    DELETE FROM {BLOCK_LEADS_LOG} AS stale USING bumped
    WHERE bumped.lead_key < 0 AND stale.block = -1 - bumped.lead_key
      AND stale.generation <= bumped.generation - {BLOCK_LOG_KEEP};"""
# ``SET search_path FROM CURRENT``: the function finds its tables in the schema it was created in,
# whatever the writer's own search path.
_PG_BODY = f"""
CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM {EPOCH};
  ELSIF TG_OP = 'INSERT' THEN
    {_PG_BUMP.format(leads="SELECT DISTINCT lead_key FROM new_rows")}
  ELSIF TG_OP = 'DELETE' THEN
    {_PG_BUMP.format(leads="SELECT DISTINCT lead_key FROM old_rows")}
  ELSE
    {_PG_BUMP.format(leads="SELECT lead_key FROM old_rows UNION SELECT lead_key FROM new_rows")}
  END IF;
  RETURN NULL;
END $$
"""


def generations_query() -> str:
    """SQL for the counters a reader of the leads ``:lo`` ≤ key < ``:hi`` compares (``generations_params``):
    the leads' own and their blocks' (negative keys), as ``lead_key, generation`` in key order."""
    return (
        f"SELECT lead_key, generation FROM {GENERATIONS} WHERE (lead_key >= :lo AND lead_key < :hi) "
        "OR (lead_key >= :block_lo AND lead_key <= :block_hi) ORDER BY lead_key"
    )


def generations_params(key_range: tuple[int, int]) -> dict[str, int]:
    """The parameters of ``generations_query`` for a (non-empty) key range."""
    lo, hi = int(key_range[0]), int(key_range[1])
    return {"lo": lo, "hi": hi, "block_lo": -1 - (hi - 1) // BLOCK_KEYS, "block_hi": -1 - lo // BLOCK_KEYS}


def block_leads(engine: Engine, block: int, after: int, upto: int) -> list[int] | None:
    """The leads the bumps of ``block``'s counter from generation ``after`` (excluded) to ``upto`` touched
    in it, or None when the log misses one of those bumps (older than it keeps, or made before it
    existed): then any lead of the block may have changed."""
    frame = read_frame(
        engine,
        f"SELECT generation, CAST(lead_keys AS TEXT) AS lead_keys FROM {BLOCK_LEADS_LOG} "
        "WHERE block = :block AND generation > :after AND generation <= :upto",
        {"block": block, "after": after, "upto": upto},
        {"generation": pl.Int64(), "lead_keys": pl.Utf8()},
    )
    if frame.height != upto - after:
        return None
    keys = frame["lead_keys"].str.json_decode(pl.List(pl.Int64())).explode()
    return keys.unique().sort().to_list()


@contextmanager
def counted_per_lead(conn: Connection, lead_keys: Sequence[int] | pl.Series) -> Iterator[None]:
    """An insert into ``events`` made inside the block counted once per lead of ``lead_keys`` (the leads of
    every row it may insert; a lead counted without a new row is only re-read) instead of once per row.

    On SQLite the insert trigger's upsert costs ≈ 2.6 CPU s per million rows, and as it may abort, the
    insert keeps a statement journal besides. For ``SQLITE_BULK_ROWS`` rows or more, the leads are counted
    in one statement, and the trigger is dropped and re-created from its own stored SQL around the
    insert, in the caller's transaction: no other connection sees the trigger missing (writers wait for
    the transaction, readers' snapshots hold it), and an error inside rolls all of it back. Elsewhere
    (PostgreSQL's statement triggers count once per statement already), on fewer rows or on an untracked
    store, nothing changes."""
    if conn.dialect.name != "sqlite" or len(lead_keys) < SQLITE_BULK_ROWS or _insert_trigger(conn) is None:
        yield
        return
    leads = pl.Series(lead_keys, dtype=pl.Int64).unique().sort().to_list()
    conn.exec_driver_sql(  # first: ``sqlite3`` opens the transaction at a write, not at DDL
        f"INSERT INTO {GENERATIONS} (lead_key, generation) SELECT value, 1 FROM json_each(?) WHERE true "
        "ON CONFLICT (lead_key) DO UPDATE SET generation = generation + 1",
        (json.dumps(leads),),
    )
    stored = _insert_trigger(conn)  # as of this transaction (an installer may have been in between)
    if stored is None or not conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        yield  # the trigger, if any, counts the rows again: counted twice, which is harmless
        return
    conn.exec_driver_sql(f"DROP TRIGGER {_SQLITE_INSERT_TRIGGER}")
    yield
    conn.exec_driver_sql(stored)


def _insert_trigger(conn: Connection) -> str | None:
    """The SQL of SQLite's insert trigger on ``events``, None when it is not installed."""
    find = "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?"
    return conn.exec_driver_sql(find, (_SQLITE_INSERT_TRIGGER,)).scalar_one_or_none()


# Serialises installers of one schema (two scoring processes starting at once): any constant works.
_PG_LOCK_KEY = 7_461_533_013


def ensure_tracking(engine: Engine) -> str:
    """Install the triggers if any is missing (or the epoch is gone); return the tracking epoch."""
    with engine.connect() as conn:
        epoch = _current_epoch(conn)
    if epoch is not None:
        return epoch
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            lock = "SELECT pg_advisory_xact_lock(hashtextextended(current_schema(), :key))"
            conn.execute(text(lock), {"key": _PG_LOCK_KEY})
        else:  # a write opens the transaction with SQLite's write lock (DDL alone would not): installers queue
            conn.execute(text(f"DELETE FROM {EPOCH} WHERE 0 = 1"))
        epoch = _current_epoch(conn)  # another installer (a scoring thread, a process) may have been first
        if epoch is not None:
            return epoch
        if conn.dialect.name == "postgresql":
            _install_postgresql(conn)
        else:
            _install_sqlite(conn)
        epoch = uuid.uuid4().hex
        conn.execute(text(f"DELETE FROM {EPOCH}"))
        conn.execute(text(f"INSERT INTO {EPOCH} (epoch) VALUES (:epoch)"), {"epoch": epoch})
    return epoch


def _current_epoch(conn: Connection) -> str | None:
    """The epoch, when every trigger is in place; else None."""
    if conn.dialect.name == "postgresql":
        present = {
            name
            for (name,) in conn.execute(
                text(
                    "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "WHERE c.relname = 'events' AND c.relnamespace = CAST(current_schema() AS regnamespace) "
                    "AND t.tgenabled <> 'D'"
                )
            )
        }
        expected = _PG_TRIGGERS.keys()
    else:
        present = {
            name
            for (name,) in conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'")
            )
        }
        expected = _SQLITE_TRIGGERS.keys()
    if not present >= expected:
        return None
    epoch = conn.execute(text(f"SELECT epoch FROM {EPOCH}")).scalar_one_or_none()
    return None if epoch is None else str(epoch)


def _install_sqlite(conn: Connection) -> None:
    for name, body in _SQLITE_TRIGGERS.items():
        statement = body.format(new=_SQLITE_BUMP.format(row="NEW"), old=_SQLITE_BUMP.format(row="OLD"))
        conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        conn.execute(text(f"CREATE TRIGGER {name} {statement}"))


def _install_postgresql(conn: Connection) -> None:
    conn.exec_driver_sql(_PG_BODY)
    for name, when in _PG_TRIGGERS.items():
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON events")
        conn.exec_driver_sql(f"CREATE TRIGGER {name} {when} FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()")
