"""Nurture state: enrolments in tracks, the log of executed steps, and enrol/exit requests from triggers."""

from datetime import datetime

from sqlalchemy import Column, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.tables import _time


class NurtureEnrolment(SQLModel, table=True):
    """A lead's passage through one track: where it stands (``current_step`` due at ``next_step_at``)
    and how it ended. ``stage`` is the journey's stage at enrolment (for ``exit: stage_changed``)."""

    __tablename__ = "nurture_enrolments"
    __table_args__ = (
        UniqueConstraint("track", "lead_key", "enrolled_at", name="ux_enrolments_natural"),
        Index("ix_enrolments_status_due", "status", "next_step_at"),
        Index("ix_enrolments_lead", "lead_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_key: int
    journey_id: int | None = None
    track: str
    stage: str | None = None
    enrolled_at: datetime = _time(nullable=False)
    current_step: int = 0
    next_step_at: datetime | None = _time()
    status: str = "active"  # active | completed | exited
    exited_at: datetime | None = _time()
    exit_reason: str | None = None
    reason: str | None = None  # why it was enrolled: entry criteria, or the trigger that asked
    run_id: str
    updated_run_id: str | None = None


class NurtureStepLog(SQLModel, table=True):
    """One executed step of one enrolment; a step runs at most once per enrolment (branches jump forward)."""

    __tablename__ = "nurture_steps"
    __table_args__ = (UniqueConstraint("enrolment_id", "step", name="ux_nurture_steps_natural"),)

    id: int | None = Field(default=None, primary_key=True)
    enrolment_id: int
    step: int
    action: str  # email | wait | audience | leave_audience | branch
    detail: str | None = None  # the template, duration, audience, or branch outcome
    at: datetime = _time(nullable=False)
    run_id: str = Field(index=True)
    message_id: str | None = Field(default=None, sa_column=Column(String, nullable=True, index=True))


class NurtureRequest(SQLModel, table=True):
    """An enrol/exit asked for by a trigger; the next ``run_nurture`` applies it (consent and re-entry
    rules still hold) and records its run in ``processed_run_id``."""

    __tablename__ = "nurture_requests"
    __table_args__ = (
        UniqueConstraint("track", "lead_key", "action", "requested_at", name="ux_nurture_requests_natural"),
        Index("ix_nurture_requests_open", "processed_run_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    track: str
    lead_key: int
    action: str  # enrol | exit
    requested_at: datetime = _time(nullable=False)
    reason: str
    run_id: str
    processed_run_id: str | None = None
    outcome: str | None = None
