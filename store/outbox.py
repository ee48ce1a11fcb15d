"""Outbox reads and writes: set-based, so a batch of thousands of messages costs a few statements.

Delivery is at-most-once (DESIGN §8): ``record_intents`` stores each message before the server is
contacted; ``record_outcomes`` then sets what came of it. A message whose intent already exists is
never sent again, whatever its status: a crash between the two leaves an ``intent`` with an unknown
outcome, which ``unknown_outcomes`` lists and ``resolve_unknown`` settles once someone has checked
the mail server's log. ``SqlOutbox`` is the port ``nurture.delivery`` writes through.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, bindparam, select, update

from store.bulk import insert_ignore, update_rows
from store.outbox_tables import OutboxMessage
from store.tables import Lead, to_micros

OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
LEADS = Lead.__table__  # type: ignore[attr-defined]
_CHUNK = 5_000


def statuses(conn: Connection, message_ids: Sequence[str]) -> dict[str, str]:
    """The recorded status of each of ``message_ids`` that the outbox already holds."""
    found: dict[str, str] = {}
    for start in range(0, len(message_ids), _CHUNK):
        part = list(message_ids[start : start + _CHUNK])
        rows = conn.execute(select(OUTBOX.c.message_id, OUTBOX.c.status).where(OUTBOX.c.message_id.in_(part)))
        found.update({message_id: status for message_id, status in rows})
    return found


def record_intents(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert ``intent`` rows (``message_id, kind, ref, lead_key, run_id, to_address, subject, path,
    created_at``); an existing Message-ID is left as it is. Returns the number inserted."""
    return insert_ignore(conn, OUTBOX, [{**row, "status": "intent", "attempts": 0} for row in rows])


def reopen_failed(conn: Connection, message_ids: Sequence[str], *, run_ids: dict[str, str]) -> None:
    """Turn ``failed`` messages back into intents before another attempt (the refusal was certain)."""
    if not message_ids:
        return
    stmt = (
        update(OUTBOX)
        .where(OUTBOX.c.message_id == bindparam("mid"), OUTBOX.c.status == "failed")
        .values(status="intent", run_id=bindparam("new_run"))
    )
    conn.execute(stmt, [{"mid": mid, "new_run": run_ids[mid]} for mid in message_ids])


def record_outcomes(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Set ``status, attempts, last_error, sent_at`` per ``message_id`` (each once): ``store.bulk.update_rows``,
    so PostgreSQL takes one staged ``UPDATE … FROM`` per delivery batch instead of a statement per message."""
    if not rows:
        return
    outcomes = [
        (row["status"], row["attempts"], row.get("last_error"), _micros(row.get("sent_at")), row["message_id"])
        for row in rows
    ]
    update_rows(conn, OUTBOX.name, ["status", "attempts", "last_error", "sent_at"], "message_id", outcomes)


def _micros(at: datetime | None) -> int | None:
    return None if at is None else to_micros(at)


def mark_bounced(conn: Connection, lead_keys: Sequence[int], at: datetime) -> int:
    """Suppress leads whose address bounced permanently (the first bounce time is kept)."""
    if not lead_keys:
        return 0
    stmt = (
        update(LEADS)
        .where(LEADS.c.key.in_(sorted(set(lead_keys))), LEADS.c.bounced_at.is_(None))
        .values(bounced_at=at, updated_at=at)
    )
    return int(conn.execute(stmt).rowcount)


class SqlOutbox:
    """The outbox table as delivery's ledger: each ``record`` is one transaction, in the order
    outcomes, then intents (a failed message tried again becomes an intent), then bounces."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def statuses(self, message_ids: Sequence[str]) -> dict[str, str]:
        with self.engine.connect() as conn:
            return statuses(conn, message_ids)

    def record(
        self,
        *,
        intents: Sequence[dict[str, Any]] = (),
        outcomes: Sequence[dict[str, Any]] = (),
        bounced: Sequence[int] = (),
        at: datetime | None = None,
    ) -> None:
        if not (intents or outcomes or bounced):
            return
        with self.engine.begin() as conn:
            if outcomes:
                record_outcomes(conn, outcomes)
            if intents:
                ids = [row["message_id"] for row in intents]
                retried = [mid for mid, status in statuses(conn, ids).items() if status == "failed"]
                reopen_failed(conn, retried, run_ids={row["message_id"]: row["run_id"] for row in intents})
                record_intents(conn, intents)
            if bounced:
                assert at is not None, "a bounce is recorded with its time"
                mark_bounced(conn, bounced, at)


def resolve_unknown(
    engine: Engine, message_ids: Sequence[str], *, as_: Literal["sent", "released"], note: str
) -> list[str]:
    """Settle intents whose outcome is unknown, after checking the mail server's log: ``sent`` (it
    went out: the step is recorded at the next run) or ``released`` (it did not: the next run sends
    it again). Returns the Message-IDs changed; ids that are not open intents are left alone."""
    if not message_ids:
        return []
    with engine.begin() as conn:
        open_ = [mid for mid, status in statuses(conn, message_ids).items() if status == "intent"]
        if not open_:
            return []
        values: dict[str, Any] = (
            {"status": "sent", "sent_at": OUTBOX.c.created_at, "last_error": note}
            if as_ == "sent"
            else {"status": "failed", "last_error": note}
        )
        conn.execute(update(OUTBOX).where(OUTBOX.c.message_id.in_(open_), OUTBOX.c.status == "intent").values(**values))
    return sorted(open_)


def unknown_outcomes(engine: Engine, *, exclude_run: str | None = None) -> list[dict[str, Any]]:
    """Messages whose send was intended but never confirmed (a crash mid-delivery): counted as sent,
    listed here so that someone can check the mail server's log."""
    query = select(OUTBOX).where(OUTBOX.c.status == "intent").order_by(OUTBOX.c.id)
    if exclude_run is not None:
        query = query.where(OUTBOX.c.run_id != exclude_run)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def messages(engine: Engine, *, kind: str | None = None, lead_key: int | None = None) -> list[dict[str, Any]]:
    """Outbox rows in insertion order (for reports, the CLI and tests)."""
    query = select(OUTBOX).order_by(OUTBOX.c.id)
    if kind is not None:
        query = query.where(OUTBOX.c.kind == kind)
    if lead_key is not None:
        query = query.where(OUTBOX.c.lead_key == lead_key)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
