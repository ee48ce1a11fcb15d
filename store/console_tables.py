"""Tables of the console: its users, the audit of every action taken in it, the sales queue's decisions and its
overdue alerts."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, String, UniqueConstraint, func
from sqlmodel import Field, SQLModel

from store.tables import Journey, Lead, QualificationMilestone, _time


class ConsoleUser(SQLModel, table=True):
    """A person who signs in to the console; only the argon2 hash of the password is kept."""

    __tablename__ = "console_users"

    email: str = Field(sa_column=Column(String, primary_key=True))
    name: str
    role: str  # marketing | sales | admin
    password_hash: str
    created_at: datetime = _time(nullable=False)
    disabled_at: datetime | None = _time()


class AuditEntry(SQLModel, table=True):
    """One action taken in the console: who, what, when, on which lead (shown on the lead page)."""

    __tablename__ = "console_audit"
    __table_args__ = (Index("ix_console_audit_lead", "lead_key", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _time(nullable=False)
    actor: str
    action: str  # sign_in | adjust | move_stage | enrol | exit | accept | reject | add_user
    lead_key: int | None = None
    product_line: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class QueueDecision(SQLModel, table=True):
    """Sales' answer to a journey that reached a qualification: accepted, or rejected with a reason code."""

    __tablename__ = "queue_decisions"
    __table_args__ = (UniqueConstraint("journey_id", "qualification", name="ux_queue_decisions_journey"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int
    lead_key: int = Field(index=True)
    product_line: str
    qualification: str
    decision: str  # accepted | rejected
    reason_code: str | None = None
    actor: str
    at: datetime = _time(nullable=False)


class QueueAlert(SQLModel, table=True):
    """An overdue queue item's alert to its owner: one per (journey, qualification), ever. Written once the
    outbox took the message (whose Message-ID derives from the item), so a crash in between re-sends nothing."""

    __tablename__ = "queue_alerts"
    __table_args__ = (UniqueConstraint("journey_id", "qualification", name="ux_queue_alerts_journey"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int
    lead_key: int
    qualification: str
    due_at: datetime = _time(nullable=False)
    to_address: str | None = None
    message_id: str | None = None
    status: str  # the outbox's answer (sent, unknown, duplicate), or no_owner
    alerted_at: datetime = _time(nullable=False)


# The console's leads list sorts journeys by score, overall or within one filter value: each is an index scan
# that stops after a page, even when no journey matches. Its search reads the start of these lead fields,
# from indexes that hold only the leads that have the field (migration 0019): the search's range on
# ``lower(field)`` implies it is not NULL, and a lead file that leaves a field out writes no entry for it.
_J = Journey.__table__  # type: ignore[attr-defined]
for _column in ("product_line", "stage", "band", "qualification"):
    Index(f"ix_journeys_{_column}_score", _J.c[_column], _J.c.score)
Index("ix_journeys_score", _J.c.score)
# The report's journeys per (line, stage) and its score histogram per (line, stage, bin), off this index alone.
Index("ix_journeys_line_stage_score", _J.c.product_line, _J.c.stage, _J.c.score)
LEAD_SEARCH_INDEXES: list[Index] = []  # deferred by a first bulk load of leads (store.bulk_indexes)
for _column in ("email", "first_name", "last_name", "company"):
    _lowered = func.lower(Lead.__table__.c[_column])  # type: ignore[attr-defined]
    _where = _lowered.is_not(None)
    _index = Index(f"ix_leads_{_column}_lower", _lowered, sqlite_where=_where, postgresql_where=_where)
    LEAD_SEARCH_INDEXES.append(_index)
# "Became MQL since": the milestones of a qualification from a time on, their journeys read off the index alone.
Index(
    "ix_milestones_qualification_reached",
    QualificationMilestone.__table__.c.qualification,  # type: ignore[attr-defined]
    QualificationMilestone.__table__.c.reached_at,  # type: ignore[attr-defined]
    QualificationMilestone.__table__.c.journey_id,  # type: ignore[attr-defined]
)
