"""Small lookups for people (explain, adjust): ORM is fine here, these are not hot paths."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from store.bulk import insert_ignore
from store.tables import Event, Journey, Lead, LeadTag, QualificationMilestone, ScoreSnapshot, StageTransition


def lead_key_of(session: Session, lead_id: str) -> int | None:
    return session.exec(select(Lead.key).where(Lead.lead_id == lead_id)).first()


def lead_history(engine: Engine, lead_id: str, product_line: str | None = None) -> dict[str, Any] | None:
    """Current score, breakdown and snapshot history of each of a lead's journeys, with its stage
    transitions, the qualifications it reached (when, in which stage, with which breakdown: milestones
    kept for good, beside ``qualification``, the current stage's level) and its manual adjustments
    (points, reason, author); the tags on the lead.

    The history is in run then step order: a run that promoted the journey shows the state that
    crossed, then each stage it entered."""
    with Session(engine) as session:
        key = lead_key_of(session, lead_id)
        if key is None:
            return None
        tags = session.exec(select(LeadTag.tag).where(LeadTag.lead_key == key).order_by(col(LeadTag.tag))).all()
        query = select(Journey).where(Journey.lead_key == key)
        if product_line:
            query = query.where(Journey.product_line == product_line)
        journeys = []
        adjustments = list_adjustments(engine, lead_key=key)  # each journey shows those that count in its line
        for journey in session.exec(query.order_by(Journey.product_line)):
            snapshots = session.exec(
                select(ScoreSnapshot)
                .where(ScoreSnapshot.journey_id == journey.id)
                .order_by(col(ScoreSnapshot.as_of), col(ScoreSnapshot.step), col(ScoreSnapshot.id))
            ).all()
            transitions = session.exec(
                select(StageTransition)
                .where(StageTransition.journey_id == journey.id)
                .order_by(col(StageTransition.at), col(StageTransition.id))
            ).all()
            milestones = session.exec(
                select(QualificationMilestone)
                .where(QualificationMilestone.journey_id == journey.id)
                .order_by(col(QualificationMilestone.reached_at), col(QualificationMilestone.threshold))
            ).all()
            journeys.append(
                {
                    "product_line": journey.product_line,
                    "stage": journey.stage,
                    "status": journey.status,
                    "stage_entered_at": journey.stage_entered_at,
                    "score": journey.score,
                    "band": journey.band,
                    "qualification": journey.qualification,
                    "milestones": [m.qualification for m in milestones],
                    "breakdown": snapshots[-1].breakdown if snapshots else [],
                    "history": [
                        {
                            "as_of": s.as_of,
                            "stage": s.stage,
                            "score": s.score,
                            "band": s.band,
                            "qualification": s.qualification,
                            "run_id": s.run_id,
                            "step": s.step,
                            "breakdown": s.breakdown,
                        }
                        for s in snapshots
                    ],
                    "transitions": [
                        t.model_dump(include={"from_stage", "to_stage", "at", "reason", "source", "run_id"})
                        | {"score_before": t.score_before, "score_after": t.score_after}
                        for t in transitions
                    ],
                    "qualifications": [
                        m.model_dump(include={"qualification", "reached_at", "stage", "score", "breakdown", "run_id"})
                        for m in milestones
                    ],
                    "adjustments": [row for row in adjustments if row["product_line"] in (None, journey.product_line)],
                }
            )
        return {"lead_id": lead_id, "lead_key": key, "tags": list(tags), "journeys": journeys}


def list_adjustments(
    engine: Engine,
    *,
    lead_key: int | None = None,
    author: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Manual adjustments (the audit trail), oldest first: when, lead, product line, points, reason, author."""
    query = (
        select(Event.occurred_at, Lead.lead_id, Event.product_line, Event.points, Event.properties, Event.event_id)
        .join(Lead, col(Lead.key) == Event.lead_key)
        .where(Event.type == "manual_adjustment")
    )
    if lead_key is not None:
        query = query.where(Event.lead_key == lead_key)
    if since is not None:
        query = query.where(Event.occurred_at >= since)
    if until is not None:
        query = query.where(Event.occurred_at <= until)
    with Session(engine) as session:
        rows = session.exec(query.order_by(col(Event.occurred_at), col(Event.event_id))).all()
    found = [
        {
            "at": at,
            "lead_id": lead,
            "product_line": line,
            "points": points,
            "reason": (properties or {}).get("reason"),
            "author": (properties or {}).get("author"),
            "event_id": event_id,
        }
        for at, lead, line, points, properties, event_id in rows
    ]
    return [row for row in found if author is None or row["author"] == author]


def add_manual_adjustment(
    engine: Engine,
    lead_id: str,
    product_line: str,
    points: float,
    reason: str,
    author: str,
    event_id: str,
    at: datetime | None = None,
) -> bool:
    """Append a ``manual_adjustment`` event (the audit trail) at ``at`` (default now); False when the
    lead is unknown."""
    with Session(engine) as session:
        key = lead_key_of(session, lead_id)
    if key is None:
        return False
    row = {
        "lead_key": key,
        "occurred_at": at or datetime.now(UTC),
        "event_id": event_id,
        "type": "manual_adjustment",
        "product_line": product_line,
        "machine": False,
        "properties": {"points": points, "reason": reason, "author": author},
        "points": points,
        "ingested_at": datetime.now(UTC),
    }
    with engine.begin() as conn:
        insert_ignore(conn, Event.__table__, [row])
    return True
