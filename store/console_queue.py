"""The sales queue in the store: qualified journeys awaiting sales' answer, the answers (each written with its
audit entry in one transaction), and the overdue items' alerts, recorded so each is sent once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, or_, select

from store import audit
from store.bulk import insert_ignore
from store.console_tables import QueueAlert, QueueDecision
from store.nurture_tables import NurtureRequest
from store.tables import Journey, Lead, QualificationMilestone, StageUpdate

_LEADS = Lead.__table__  # type: ignore[attr-defined]
_JOURNEYS = Journey.__table__  # type: ignore[attr-defined]
_MILESTONES = QualificationMilestone.__table__  # type: ignore[attr-defined]
_DECISIONS = QueueDecision.__table__  # type: ignore[attr-defined]
_ALERTS = QueueAlert.__table__  # type: ignore[attr-defined]
_UPDATES = StageUpdate.__table__  # type: ignore[attr-defined]
_REQUESTS = NurtureRequest.__table__  # type: ignore[attr-defined]

ITEM_COLUMNS = (
    _MILESTONES.c.journey_id,
    _MILESTONES.c.lead_key,
    _MILESTONES.c.product_line,
    _MILESTONES.c.qualification,
    _MILESTONES.c.reached_at,
    _MILESTONES.c.breakdown,
    _JOURNEYS.c.stage,
    _JOURNEYS.c.score,
    _JOURNEYS.c.band,
    _LEADS.c.lead_id,
    _LEADS.c.email,
    _LEADS.c.first_name,
    _LEADS.c.last_name,
    _LEADS.c.company,
    _LEADS.c.owner_email,
)


def _unanswered() -> Any:
    decided = select(_DECISIONS.c.id).where(
        _DECISIONS.c.journey_id == _MILESTONES.c.journey_id, _DECISIONS.c.qualification == _MILESTONES.c.qualification
    )
    return ~decided.exists()


def _items() -> Any:
    return _MILESTONES.join(_JOURNEYS, _JOURNEYS.c.id == _MILESTONES.c.journey_id).join(
        _LEADS, _LEADS.c.key == _MILESTONES.c.lead_key
    )


def queue(engine: Engine, qualifications: Sequence[str], owner: str | None, limit: int = 500) -> list[dict[str, Any]]:
    """Qualification milestones sales has not answered yet, oldest first (of ``owner``'s leads, when given):
    one row per (journey, qualification) with the breakdown that reached it, and when its owner was alerted."""
    alerted = _ALERTS.c.journey_id == _MILESTONES.c.journey_id, _ALERTS.c.qualification == _MILESTONES.c.qualification
    stmt = (
        select(*ITEM_COLUMNS, _ALERTS.c.alerted_at)
        .select_from(_items().outerjoin(_ALERTS, and_(*alerted)))
        .where(_MILESTONES.c.qualification.in_(list(qualifications)), _unanswered())
        .order_by(_MILESTONES.c.reached_at, _MILESTONES.c.id)
        .limit(limit)
    )
    if owner is not None:
        stmt = stmt.where(_LEADS.c.owner_email == owner)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(stmt)]


def decide(
    engine: Engine,
    journey: dict[str, Any],
    product_line: str,
    decision: str,
    actor: str,
    *,
    reason_code: str | None = None,
    next_stage: str | None = None,
    recycle_track: str | None = None,
) -> int:
    """Answer every open milestone of a journey at once (accepted or rejected); an acceptance moves it to
    ``next_stage``, a rejection recycles it into ``recycle_track``. Returns the milestones answered."""
    now = datetime.now(UTC)
    key = journey["key"]
    decided = select(_DECISIONS.c.qualification).where(_DECISIONS.c.journey_id == journey["id"])
    open_milestones = select(_MILESTONES.c.qualification).where(
        _MILESTONES.c.journey_id == journey["id"], _MILESTONES.c.qualification.not_in(decided)
    )
    with engine.begin() as conn:
        qualifications = list(conn.execute(open_milestones).scalars())
        rows = [
            {
                "journey_id": journey["id"],
                "lead_key": key,
                "product_line": product_line,
                "qualification": qualification,
                "decision": decision,
                "reason_code": reason_code,
                "actor": actor,
                "at": now,
            }
            for qualification in qualifications
        ]
        answered = insert_ignore(conn, _DECISIONS, rows)
        if not answered:
            return 0
        detail: dict[str, Any] = {"qualifications": qualifications, "reason_code": reason_code}
        if next_stage is not None:
            update = {"lead_key": key, "product_line": product_line, "stage": next_stage, "changed_at": now}
            insert_ignore(conn, _UPDATES, [update | {"source": f"console:{actor}", "ingested_at": now}])
            detail["stage"] = next_stage
        if recycle_track is not None:
            request = {"track": recycle_track, "lead_key": key, "action": "enrol", "requested_at": now}
            reason = f"rejected by sales: {reason_code}"
            insert_ignore(conn, _REQUESTS, [request | {"reason": reason, "run_id": "console"}])
            detail["track"] = recycle_track
        action = {"accepted": "accept", "rejected": "reject"}[decision]
        audit.record(conn, actor, action, lead_key=key, product_line=product_line, at=now, **detail)
    return answered


def owners(engine: Engine) -> list[str]:
    """The owners leads are assigned to (the queue's per-owner filter)."""
    stmt = (
        select(_LEADS.c.owner_email).where(_LEADS.c.owner_email.is_not(None)).distinct().order_by(_LEADS.c.owner_email)
    )
    with engine.connect() as conn:
        return list(conn.execute(stmt).scalars())


# ── overdue alerts ──────────────────────────────────────────────────────────────────────────────


def overdue(engine: Engine, cutoffs: dict[str, datetime]) -> list[dict[str, Any]]:
    """Unanswered, never alerted items whose qualification was reached before its cutoff (now − its SLA),
    oldest first: one row per (journey, qualification)."""
    if not cutoffs:
        return []
    alerted = select(_ALERTS.c.id).where(
        _ALERTS.c.journey_id == _MILESTONES.c.journey_id, _ALERTS.c.qualification == _MILESTONES.c.qualification
    )
    late = or_(
        *(and_(_MILESTONES.c.qualification == name, _MILESTONES.c.reached_at < at) for name, at in cutoffs.items())
    )
    stmt = (
        select(*ITEM_COLUMNS)
        .select_from(_items())
        .where(late, _unanswered(), ~alerted.exists())
        .order_by(_MILESTONES.c.reached_at, _MILESTONES.c.id)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(stmt)]


def record_alerts(engine: Engine, rows: Sequence[dict[str, Any]]) -> int:
    """Record alerts (``journey_id, lead_key, qualification, due_at, to_address, message_id, status``); an item
    already recorded keeps its first record. Returns the rows written."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        return insert_ignore(conn, _ALERTS, [row | {"alerted_at": now} for row in rows])
