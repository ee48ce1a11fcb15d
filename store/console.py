"""Reads and writes of the console: the leads list, what a lead page shows beyond ``lead_history``, and the
actions people take on a lead (each written with its audit entry in one transaction). The sales queue is in
``store.console_queue``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Select, and_, case, func, or_, select

from store import audit
from store.audiences import AudienceMember
from store.bulk import insert_ignore
from store.console_tables import QueueDecision
from store.nurture_tables import NurtureEnrolment, NurtureRequest
from store.outbox_tables import OutboxMessage
from store.tables import Event, Journey, Lead, QualificationMilestone, StageUpdate, TriggerFiring

_LEADS = Lead.__table__  # type: ignore[attr-defined]
_JOURNEYS = Journey.__table__  # type: ignore[attr-defined]
_EVENTS = Event.__table__  # type: ignore[attr-defined]
_MILESTONES = QualificationMilestone.__table__  # type: ignore[attr-defined]
_DECISIONS = QueueDecision.__table__  # type: ignore[attr-defined]
_UPDATES = StageUpdate.__table__  # type: ignore[attr-defined]
_REQUESTS = NurtureRequest.__table__  # type: ignore[attr-defined]
_ENROLMENTS = NurtureEnrolment.__table__  # type: ignore[attr-defined]
_OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
_FIRINGS = TriggerFiring.__table__  # type: ignore[attr-defined]
_AUDIENCES = AudienceMember.__table__  # type: ignore[attr-defined]

SORTS = ("score_desc", "score_asc", "lead_id")


@dataclass(frozen=True)
class LeadFilter:
    """What the leads list shows: one row per journey (a lead in a product line) matching every field set."""

    q: str | None = None  # an exact lead id, or the start of an email, first or last name, or company
    product_line: str | None = None
    stage: str | None = None
    band: str | None = None
    qualification: str | None = None
    owner: str | None = None
    mql_since: datetime | None = None  # reached ``since_qualification`` at or after this time
    since_qualification: str = "MQL"
    sort: str = "score_desc"


LIST_COLUMNS = (
    _LEADS.c.lead_id,
    _LEADS.c.email,
    _LEADS.c.first_name,
    _LEADS.c.last_name,
    _LEADS.c.company,
    _LEADS.c.owner_email,
    _JOURNEYS.c.product_line,
    _JOURNEYS.c.stage,
    _JOURNEYS.c.score,
    _JOURNEYS.c.band,
    _JOURNEYS.c.qualification,
)


# Searched by prefix, case-insensitive, through an index on ``lower(column)`` each (store.console_tables):
# a search that matches nothing answers as fast as one that matches everything.
SEARCHED = (_LEADS.c.email, _LEADS.c.first_name, _LEADS.c.last_name, _LEADS.c.company)


def _starts_with(column: Any, prefix: str) -> Any:
    """``lower(column)`` starts with ``prefix``, as a range an index serves (SQLite's LIKE cannot use an
    expression index)."""
    low = prefix.lower()
    return and_(func.lower(column) >= low, func.lower(column) < low[:-1] + chr(ord(low[-1]) + 1))


def _filtered(flt: LeadFilter, *, probe: bool = False) -> Select[Any]:
    stmt = select(*LIST_COLUMNS).select_from(_JOURNEYS.join(_LEADS, _LEADS.c.key == _JOURNEYS.c.lead_key))
    if flt.q:
        q = flt.q.strip()
        stmt = stmt.where(or_(_LEADS.c.lead_id == q, *(_starts_with(column, q) for column in SEARCHED)))
    for column, value in (
        (_JOURNEYS.c.product_line, flt.product_line),
        (_JOURNEYS.c.stage, flt.stage),
        (_JOURNEYS.c.band, flt.band),
        (_JOURNEYS.c.qualification, flt.qualification),
        (_LEADS.c.owner_email, flt.owner),
    ):
        if value:
            stmt = stmt.where(column == value)
    if flt.mql_since is not None:
        reached = _reached(flt)
        if probe:  # walk the journeys in score order, each probed by its (journey, qualification) key
            stmt = stmt.where(reached.where(_MILESTONES.c.journey_id == _JOURNEYS.c.id).exists())
        else:  # read the few matches off the (qualification, reached_at, journey) index, then sort them
            stmt = stmt.where(_JOURNEYS.c.id.in_(reached.with_only_columns(_MILESTONES.c.journey_id)))
    if flt.sort == "lead_id":
        return stmt.order_by(_LEADS.c.lead_id, _JOURNEYS.c.product_line)
    if flt.sort == "score_asc":
        return stmt.order_by(_JOURNEYS.c.score.asc().nulls_last(), _JOURNEYS.c.id)
    # Ties in the score index's own order (score, then id, both descending): a walk that stops after a page
    # needs no sort of a whole group of equal scores.
    return stmt.order_by(_JOURNEYS.c.score.desc().nulls_last(), _JOURNEYS.c.id.desc())


def _reached(flt: LeadFilter) -> Select[Any]:
    return select(1).where(
        _MILESTONES.c.qualification == flt.since_qualification, _MILESTONES.c.reached_at >= flt.mql_since
    )


# "Became MQL since" matching more milestones than this is served by walking the score index and probing
# each journey (a page fills early); fewer, by reading the matches and sorting them (≈ 1 µs a match).
PROBE_ABOVE = 20_000


def list_leads(engine: Engine, flt: LeadFilter, page: int, per_page: int) -> tuple[list[dict[str, Any]], bool]:
    """One page of the list and whether another follows (no total count: it would scan every match)."""
    with engine.connect() as conn:
        probe = False
        if flt.mql_since is not None:
            matches = _reached(flt).limit(PROBE_ABOVE + 1).subquery()  # counted up to the threshold only
            probe = conn.execute(select(func.count()).select_from(matches)).scalar_one() > PROBE_ABOVE
        stmt = _filtered(flt, probe=probe).limit(per_page + 1).offset(max(page - 1, 0) * per_page)
        rows = [dict(row._mapping) for row in conn.execute(stmt)]
    return rows[:per_page], len(rows) > per_page


def export_leads(engine: Engine, flt: LeadFilter, chunk: int = 5_000) -> Iterator[dict[str, Any]]:
    """Every row of the filter, streamed (a CSV export of 200k rows never holds them all)."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk).execute(_filtered(flt))
        for row in result:
            yield dict(row._mapping)


def lead_profile(engine: Engine, key: int) -> dict[str, Any]:
    """The lead's own fields, and everything around it the lead page shows next to ``lead_history``:
    manual adjustments, nurture enrolments, the emails sent with their opens and clicks, audiences, firings."""
    adjustments = (
        select(_EVENTS.c.occurred_at, _EVENTS.c.product_line, _EVENTS.c.points, _EVENTS.c.properties)
        .where(_EVENTS.c.lead_key == key, _EVENTS.c.type == "manual_adjustment")
        .order_by(_EVENTS.c.occurred_at.desc())
    )
    engaged = (
        select(
            _EVENTS.c.message_id,
            func.sum(case((_EVENTS.c.type == "email_open", 1), else_=0)).label("opens"),
            func.sum(case((_EVENTS.c.type == "email_click", 1), else_=0)).label("clicks"),
        )
        .where(_EVENTS.c.lead_key == key, _EVENTS.c.message_id.is_not(None), _EVENTS.c.machine.is_(False))
        .group_by(_EVENTS.c.message_id)
        .subquery()
    )
    emails = (
        select(
            _OUTBOX.c.created_at,
            _OUTBOX.c.kind,
            _OUTBOX.c.ref,
            _OUTBOX.c.subject,
            _OUTBOX.c.status,
            func.coalesce(engaged.c.opens, 0).label("opens"),
            func.coalesce(engaged.c.clicks, 0).label("clicks"),
        )
        .select_from(_OUTBOX.outerjoin(engaged, engaged.c.message_id == _OUTBOX.c.message_id))
        .where(_OUTBOX.c.lead_key == key)
        .order_by(_OUTBOX.c.created_at.desc())
    )
    enrolments = (
        select(
            _ENROLMENTS.c.track,
            _ENROLMENTS.c.enrolled_at,
            _ENROLMENTS.c.current_step,
            _ENROLMENTS.c.status,
            _ENROLMENTS.c.exit_reason,
            _ENROLMENTS.c.reason,
        )
        .where(_ENROLMENTS.c.lead_key == key)
        .order_by(_ENROLMENTS.c.enrolled_at.desc())
    )
    firings = (
        select(
            _FIRINGS.c.fired_at,
            _FIRINGS.c.product_line,
            _FIRINGS.c.trigger,
            _FIRINGS.c.action,
            _FIRINGS.c.stage,
            _FIRINGS.c.score,
            _FIRINGS.c.status,
        )
        .where(_FIRINGS.c.journey_id.in_(select(_JOURNEYS.c.id).where(_JOURNEYS.c.lead_key == key)))  # indexed
        .order_by(_FIRINGS.c.fired_at.desc(), _FIRINGS.c.id.desc())
        .limit(100)
    )
    audiences = (
        select(_AUDIENCES.c.audience, _AUDIENCES.c.added_at, _AUDIENCES.c.removed_at)
        .where(_AUDIENCES.c.lead_key == key)
        .order_by(_AUDIENCES.c.audience)
    )
    with engine.connect() as conn:
        lead = dict(conn.execute(select(_LEADS).where(_LEADS.c.key == key)).one()._mapping)

        def rows(stmt: Select[Any]) -> list[dict[str, Any]]:
            return [dict(row._mapping) for row in conn.execute(stmt)]

        return {
            "lead": lead,
            "adjustments": [
                {
                    "at": row["occurred_at"],
                    "product_line": row["product_line"],
                    "points": row["points"],
                    "reason": row["properties"].get("reason"),
                    "author": row["properties"].get("author"),
                }
                for row in rows(adjustments)
            ],
            "emails": rows(emails),
            "enrolments": rows(enrolments),
            "firings": rows(firings),
            "audiences": rows(audiences),
        }


def journey_of(engine: Engine, lead_id: str, product_line: str) -> dict[str, Any] | None:
    """The lead's key, owner and journey in ``product_line`` (None when it has none there)."""
    stmt = (
        select(_LEADS.c.key, _LEADS.c.owner_email, _JOURNEYS.c.id, _JOURNEYS.c.stage, _JOURNEYS.c.status)
        .select_from(_LEADS.join(_JOURNEYS, _JOURNEYS.c.lead_key == _LEADS.c.key))
        .where(_LEADS.c.lead_id == lead_id, _JOURNEYS.c.product_line == product_line)
    )
    with engine.connect() as conn:
        row = conn.execute(stmt).first()
    return None if row is None else dict(row._mapping)


# ── actions: each writes what it does and its audit entry in one transaction ──────────────────


def adjust(engine: Engine, key: int, product_line: str, points: float, reason: str, actor: str) -> None:
    """A ``manual_adjustment`` event authored by ``actor``: the next run scores it, the log keeps it."""
    now = datetime.now(UTC)
    row = {
        "lead_key": key,
        "occurred_at": now,
        "event_id": f"console-{uuid.uuid4().hex}",
        "type": "manual_adjustment",
        "product_line": product_line,
        "machine": False,
        "properties": {"points": points, "reason": reason, "author": actor},
        "points": points,
        "ingested_at": now,
    }
    with engine.begin() as conn:
        insert_ignore(conn, _EVENTS, [row])
        audit.record(
            conn, actor, "adjust", lead_key=key, product_line=product_line, at=now, points=points, reason=reason
        )


def move_stage(
    engine: Engine, key: int, product_line: str, stage: str, actor: str, *, action: str = "move_stage"
) -> None:
    """An external stage update, as if the CRM had sent it: the next run applies it (reset/carry and all)."""
    now = datetime.now(UTC)
    row = {
        "lead_key": key,
        "product_line": product_line,
        "stage": stage,
        "changed_at": now,
        "source": f"console:{actor}",
        "ingested_at": now,
    }
    with engine.begin() as conn:
        insert_ignore(conn, _UPDATES, [row])
        audit.record(conn, actor, action, lead_key=key, product_line=product_line, at=now, stage=stage)


def request_track(engine: Engine, key: int, track: str, action: str, actor: str, reason: str) -> None:
    """Ask the next nurture run to enrol the lead in ``track`` or end its enrolment (``action``: enrol | exit);
    consent and re-entry rules still decide there."""
    now = datetime.now(UTC)
    row = {
        "track": track,
        "lead_key": key,
        "action": action,
        "requested_at": now,
        "reason": reason,
        "run_id": "console",
    }
    with engine.begin() as conn:
        insert_ignore(conn, _REQUESTS, [row])
        audit.record(conn, actor, action, lead_key=key, at=now, track=track, reason=reason)
