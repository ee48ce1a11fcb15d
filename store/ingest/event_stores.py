"""Where a load's events are stored, and the checks' look-ups into them: ``events``, and while a SQLite
back-fill stages its rows (``event_stage``), the staging table too, looked in as part of the store (a
repeated id, an earlier delivery, an event to flag may be in either)."""

from collections.abc import Sequence

import polars as pl
from sqlalchemy import Connection, Table, update

from store.ingest.lookup import in_list, lookup
from store.ingest.machine import DELIVERY_TYPES
from store.tables import Event, to_micros

_PROBE = 64  # ids of a chunk probed first: none stored means a first load, not worth a full look-up
Stores = tuple[Table, ...]
STORED: Stores = (Event.__table__,)


def flag_machine(conn: Connection, event_ids: Sequence[str], stores: Stores = STORED) -> int:
    """Flag events of this run whose delivery came later in the file; returns how many changed."""
    flagged = 0
    for table in stores:
        condition, batch = in_list(conn, table.c.event_id)
        stmt = update(table).where(condition).where(table.c.machine.is_(False)).values(machine=True)
        for start in range(0, len(event_ids), batch):
            flagged += conn.execute(stmt, {"wanted": list(event_ids[start : start + batch])}).rowcount
    return flagged


def stored_deliveries(conn: Connection, message_ids: Sequence[str], stores: Stores = STORED) -> dict[str, list[int]]:
    """The delivery times stored for each of ``message_ids`` (the machine detector's look-up)."""
    found: dict[str, list[int]] = {}
    for table in stores:
        for message_id, occurred_at in lookup(
            conn,
            table.c.message_id,
            message_ids,
            [table.c.message_id, table.c.occurred_at],
            table.c.type.in_(DELIVERY_TYPES),
        ):
            found.setdefault(message_id, []).append(to_micros(occurred_at))
    return found


def none_stored(conn: Connection, event_ids: list[str] | pl.Series, stores: Stores = STORED) -> bool:
    """Whether a sample of ``event_ids`` is stored: on a first load none is (a guess: the odd stored id
    the sample misses is skipped by the merge)."""
    sample = event_ids[:: max(1, len(event_ids) // _PROBE)]
    return not any(lookup(conn, table.c.event_id, sample, [table.c.event_id]) for table in stores)


def stored_ids(conn: Connection, event_ids: list[str], stores: Stores = STORED) -> set[str]:
    """Which of ``event_ids`` are stored already; the full look-up is only paid on a re-ingest."""
    if none_stored(conn, event_ids, stores):
        return set()
    return {
        event_id for table in stores for (event_id,) in lookup(conn, table.c.event_id, event_ids, [table.c.event_id])
    }
