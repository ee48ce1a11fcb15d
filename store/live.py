"""Reads and small writes of the HTTP service: current scores, preference changes, email feedback."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, update

from store.bulk import insert_ignore
from store.nurture_tables import NurtureEnrolment
from store.outbox_tables import OutboxMessage
from store.service_tables import WebhookReceipt
from store.tables import Event, Journey, Lead, ScoreSnapshot

_LEADS = Lead.__table__  # type: ignore[attr-defined]
_JOURNEYS = Journey.__table__  # type: ignore[attr-defined]
_SNAPSHOTS = ScoreSnapshot.__table__  # type: ignore[attr-defined]
_ENROLMENTS = NurtureEnrolment.__table__  # type: ignore[attr-defined]
_OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
_RECEIPTS = WebhookReceipt.__table__  # type: ignore[attr-defined]


def lead_key(engine: Engine, lead_id: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(select(_LEADS.c.key).where(_LEADS.c.lead_id == lead_id)).scalar()


def current_scores(engine: Engine, lead_id: str, product_line: str | None = None) -> list[dict[str, Any]] | None:
    """Each journey of the lead as the latest run left it, with the breakdown of its latest snapshot;
    None for an unknown lead. Two indexed look-ups: this answers website requests."""
    journeys = select(
        _LEADS.c.key,
        _JOURNEYS.c.id,
        _JOURNEYS.c.product_line,
        _JOURNEYS.c.stage,
        _JOURNEYS.c.status,
        _JOURNEYS.c.score,
        _JOURNEYS.c.band,
        _JOURNEYS.c.qualification,
        _JOURNEYS.c.stage_entered_at,
    ).select_from(_LEADS.outerjoin(_JOURNEYS, _JOURNEYS.c.lead_key == _LEADS.c.key))
    journeys = journeys.where(_LEADS.c.lead_id == lead_id).order_by(_JOURNEYS.c.product_line)
    with engine.connect() as conn:
        rows = conn.execute(journeys).all()
        if not rows:
            return None
        found = [row for row in rows if row.id is not None and product_line in (None, row.product_line)]
        latest: dict[int, Any] = {}
        if found:
            snapshots = (
                select(_SNAPSHOTS.c.journey_id, _SNAPSHOTS.c.as_of, _SNAPSHOTS.c.run_id, _SNAPSHOTS.c.breakdown)
                .where(_SNAPSHOTS.c.lead_key == rows[0].key, _SNAPSHOTS.c.journey_id.in_([row.id for row in found]))
                .order_by(_SNAPSHOTS.c.as_of, _SNAPSHOTS.c.id)
            )
            latest = {snapshot.journey_id: snapshot for snapshot in conn.execute(snapshots)}
    return [
        {
            "product_line": row.product_line,
            "stage": row.stage,
            "status": row.status,
            "score": row.score,
            "band": row.band,
            "qualification": row.qualification,
            "stage_entered_at": row.stage_entered_at,
            "scored_at": latest[row.id].as_of if row.id in latest else None,
            "run_id": latest[row.id].run_id if row.id in latest else None,
            "breakdown": latest[row.id].breakdown if row.id in latest else [],
        }
        for row in found
    ]


def resubscribe(engine: Engine, key: int, at: datetime) -> bool:
    """Clear a lead's unsubscribe (the lead asked for it in the preference centre); True if it was set."""
    stmt = (
        update(_LEADS)
        .where(_LEADS.c.key == key, _LEADS.c.unsubscribed_at.is_not(None))
        .values(unsubscribed_at=None, updated_at=at)
    )
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


def end_track_enrolments(engine: Engine, key: int, tracks: Sequence[str], *, at: datetime, run_id: str) -> int:
    """End a lead's active enrolments in ``tracks`` (one product line's): an unsubscribe from that line."""
    if not tracks:
        return 0
    stmt = (
        update(_ENROLMENTS)
        .where(and_(_ENROLMENTS.c.lead_key == key, _ENROLMENTS.c.status == "active"))
        .where(_ENROLMENTS.c.track.in_(list(tracks)))
        .values(status="exited", exit_reason="unsubscribed", exited_at=at, next_step_at=None, updated_run_id=run_id)
    )
    with engine.begin() as conn:
        return int(conn.execute(stmt).rowcount)


def preferences(engine: Engine, key: int) -> tuple[datetime | None, set[str]]:
    """A lead's unsubscribe time (None: subscribed) and the product lines it stopped since it last
    resubscribed (``unsubscribe`` events of one line; a ``resubscribe`` event clears them all)."""
    events = Event.__table__  # type: ignore[attr-defined]
    last_resubscribe = (
        select(func.max(events.c.occurred_at))
        .where(events.c.lead_key == key, events.c.type == "resubscribe")
        .scalar_subquery()
    )
    lines = (
        select(events.c.product_line)
        .where(events.c.lead_key == key, events.c.type == "unsubscribe", events.c.product_line.is_not(None))
        .where(or_(last_resubscribe.is_(None), events.c.occurred_at > last_resubscribe))
        .distinct()
    )
    with engine.connect() as conn:
        unsubscribed = conn.execute(select(_LEADS.c.unsubscribed_at).where(_LEADS.c.key == key)).scalar()
        return unsubscribed, set(conn.execute(lines).scalars())


def leads_by_message(engine: Engine, message_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    """``message_id → (lead_id, lead_key)`` of the messages leadscore sent (the outbox knows the lead)."""
    if not message_ids:
        return {}
    stmt = (
        select(_OUTBOX.c.message_id, _LEADS.c.lead_id, _LEADS.c.key)
        .join(_LEADS, _LEADS.c.key == _OUTBOX.c.lead_key)
        .where(_OUTBOX.c.message_id.in_(sorted(set(message_ids))))
    )
    with engine.connect() as conn:
        return {message_id: (lead_id, key) for message_id, lead_id, key in conn.execute(stmt)}


def receipt_seen(engine: Engine, provider: str, receipt_id: str) -> bool:
    stmt = select(_RECEIPTS.c.receipt_id).where(_RECEIPTS.c.provider == provider, _RECEIPTS.c.receipt_id == receipt_id)
    with engine.connect() as conn:
        return conn.execute(stmt).first() is not None


def record_receipt(engine: Engine, provider: str, receipt_id: str, at: datetime) -> None:
    with engine.begin() as conn:
        insert_ignore(conn, _RECEIPTS, [{"provider": provider, "receipt_id": receipt_id, "received_at": at}])
