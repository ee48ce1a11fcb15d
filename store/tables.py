"""SQLModel tables: the event log, leads, journeys and the score history.

Events are clustered by ``(lead_key, occurred_at, event_id)`` (``WITHOUT ROWID`` on SQLite) so that a
lead-range partition is one sequential range scan: scoring reads events partition by partition.
Event times are stored as integer microseconds since the Unix epoch (UTC) on every dialect, so the
columnar readers need no per-dialect timestamp parsing.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from store.sparse_events import sparse_types_term


def utcnow() -> datetime:
    return datetime.now(UTC)


class EpochMicros(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime stored as BIGINT microseconds since the epoch."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> int | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: leadscore stores timezone-aware times only")
        return to_micros(value)

    def process_result_value(self, value: int | None, dialect: Any) -> datetime | None:
        return None if value is None else from_micros(value)


def to_micros(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value // 1_000_000, UTC).replace(microsecond=value % 1_000_000)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(nullable: bool = True, **kw: Any) -> Any:
    return Field(default=None, sa_column=Column(EpochMicros(), nullable=nullable, **kw))


class Lead(SQLModel, table=True):
    """A person. ``lead_id`` is the external stable id; ``key`` is the compact internal one."""

    __tablename__ = "leads"

    key: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    lead_id: str = Field(sa_column=Column(String, unique=True, nullable=False))
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    company: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    owner_email: str | None = None
    email_opt_in: bool = False
    ads_opt_in: bool = False
    unsubscribed_at: datetime | None = _time()
    bounced_at: datetime | None = _time()
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime | None = _time()
    updated_at: datetime | None = _time()
    # The account (company) the lead belongs to; empty: its email domain, unless free mail (store.account_tables).
    # Not indexed: membership is computed from a scan of every lead, no query looks leads up by it (0019).
    account_id: str | None = None


_NAMED = text("message_id IS NOT NULL")
PROMOTED_TEXT_PROPERTIES = ("url", "form", "asset", "campaign", "webinar")
PROMOTED_NUMBER_PROPERTIES = ("duration_s", "points")
PROMOTED_PROPERTIES = PROMOTED_TEXT_PROPERTIES + PROMOTED_NUMBER_PROPERTIES


class Event(SQLModel, table=True):
    """An immutable fact about a lead; ``event_id`` is the dedupe key.

    ``properties`` keeps the event's properties as received. The well-known ones that rules filter on
    (``PROMOTED_PROPERTIES``) are also stored as typed columns: scoring reads them without parsing
    JSON, which would otherwise dominate its time.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ux_events_event_id", "event_id", unique=True),
        # Only events that have a message id: every reader asks for given ids (migration 0016).
        Index("ix_events_message_id", "message_id", sqlite_where=_NAMED, postgresql_where=_NAMED),
        # Only the few types read by type alone (store.sparse_events, migrations 0022 and 0026).
        Index(
            "ix_events_sparse_type",
            "type",
            "occurred_at",
            sqlite_where=text(sparse_types_term()),
            postgresql_where=text(sparse_types_term()),
        ),
        {"sqlite_with_rowid": False},
    )

    lead_key: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    occurred_at: datetime = Field(sa_column=Column(EpochMicros(), primary_key=True))
    event_id: str = Field(sa_column=Column(String, primary_key=True))
    type: str
    product_line: str | None = None
    machine: bool = False
    message_id: str | None = None
    url: str | None = None
    form: str | None = None
    asset: str | None = None
    campaign: str | None = None
    webinar: str | None = None
    duration_s: float | None = None
    points: float | None = None
    properties: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    ingested_at: datetime | None = _time()


class Journey(SQLModel, table=True):
    """A lead's current position in one product line's funnel, with its latest score."""

    __tablename__ = "journeys"
    __table_args__ = (
        UniqueConstraint("lead_key", "product_line", name="ux_journeys_lead_line"),
        # A scoring task reads one line's journeys in a lead-key range: without this index SQLite
        # answers from the (product_line, score) index of the console and reads the line's every journey.
        Index("ix_journeys_line_lead", "product_line", "lead_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_key: int = Field(index=True)
    product_line: str
    stage: str
    status: str = "active"
    opened_at: datetime | None = _time()
    stage_entered_at: datetime | None = _time()
    score_from: datetime | None = _time()
    # How the journey entered its stage: opened, threshold or external (a CRM move holds it there).
    entered_by: str | None = None
    score: float | None = None
    band: str | None = None
    qualification: str | None = None
    updated_run_id: str | None = None


class ScoreSnapshot(SQLModel, table=True):
    """The score history: one row each time a journey's stage, score, band or qualification changed.

    A run that promotes a journey writes one row per state it went through, in ``step`` order: the state
    that crossed the threshold (step 0), then each new stage's state (step k after the k-th promotion).
    """

    __tablename__ = "score_snapshots"
    __table_args__ = (Index("ix_snapshots_journey_run_step", "journey_id", "run_id", "step", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int
    lead_key: int = Field(index=True)
    product_line: str
    stage: str
    run_id: str
    step: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    as_of: datetime = _time(nullable=False)
    score: float
    band: str | None = None
    qualification: str | None = None
    breakdown: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class Run(SQLModel, table=True):
    """One pipeline run; every snapshot records the run that wrote it.

    ``scope`` is the run lock it held (``store.runlock``), ``host``/``pid`` the process that ran it: a
    ``running`` run of a scope whose lock is free was killed, and the next run marks it ``aborted``
    with ``note`` saying when and why.
    """

    __tablename__ = "runs"

    run_id: str = Field(primary_key=True)
    kind: str
    status: str = "running"  # running | completed | failed | aborted
    as_of: datetime = _time(nullable=False)
    started_at: datetime | None = _time()
    finished_at: datetime | None = _time()
    stats: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    scope: str | None = None
    host: str | None = None
    pid: int | None = None
    note: str | None = None


class RunLock(SQLModel, table=True):
    """Who holds the run lock of a scope (a portfolio on this store). On SQLite the row is the lock
    (taken inside ``BEGIN IMMEDIATE``); on PostgreSQL an advisory lock is, and the row says who has it."""

    __tablename__ = "run_locks"

    scope: str = Field(primary_key=True)
    run_id: str | None = None
    host: str
    pid: int
    acquired_at: datetime = _time(nullable=False)


class IngestReject(SQLModel, table=True):
    """A row that ingestion refused, kept with its reason; unique per (file, line, content)."""

    __tablename__ = "ingest_rejects"
    __table_args__ = (UniqueConstraint("kind", "source", "line", "row_hash", name="ux_rejects_row"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    source: str
    line: int
    field: str | None = None
    reason: str
    row_hash: str
    raw: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    rejected_at: datetime | None = _time()


class StageUpdate(SQLModel, table=True):
    """An external (CRM) stage change as ingested; applied by the next scoring run, which records its id."""

    __tablename__ = "stage_updates"
    __table_args__ = (
        UniqueConstraint("lead_key", "product_line", "stage", "changed_at", name="ux_stage_updates_natural"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_key: int = Field(index=True)
    product_line: str
    stage: str
    changed_at: datetime = _time(nullable=False)
    source: str = "external"
    ingested_at: datetime | None = _time()
    applied_run_id: str | None = Field(default=None, index=True)


class StageTransition(SQLModel, table=True):
    """A journey moving between stages (by threshold or external update) with its reset/carry outcome."""

    __tablename__ = "stage_transitions"
    __table_args__ = (
        UniqueConstraint("journey_id", "at", "to_stage", "reason", name="ux_transitions_natural"),
        Index("ix_transitions_run", "run_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int = Field(index=True)
    lead_key: int
    product_line: str
    from_stage: str | None = None
    to_stage: str
    at: datetime = _time(nullable=False)
    reason: str  # threshold | external
    source: str | None = None
    score_before: float | None = None
    score_after: float | None = None
    score_from: datetime | None = _time()
    status: str = "active"
    run_id: str


class QualificationMilestone(SQLModel, table=True):
    """The first time a journey reached a qualification (MQL, SQL…), with the breakdown that reached it."""

    __tablename__ = "qualification_milestones"
    __table_args__ = (UniqueConstraint("journey_id", "qualification", name="ux_milestones_journey_qualification"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int
    lead_key: int = Field(index=True)
    product_line: str
    qualification: str
    threshold: float
    reached_at: datetime = _time(nullable=False)
    stage: str
    score: float
    run_id: str
    breakdown: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class TriggerArm(SQLModel, table=True):
    """A trigger's arm state for one journey, stored only where the journey's state cannot imply it."""

    __tablename__ = "trigger_arms"

    journey_id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    trigger: str = Field(sa_column=Column(String, primary_key=True))
    armed: bool
    as_of: datetime = _time(nullable=False)


class TriggerArmLog(SQLModel, table=True):
    """Every arm row a run wrote, kept: a replay as of T reads each pair's last row before T."""

    __tablename__ = "trigger_arm_log"

    journey_id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    trigger: str = Field(sa_column=Column(String, primary_key=True))
    as_of: datetime = Field(sa_column=Column(EpochMicros(), primary_key=True))
    armed: bool


class TriggerFiring(SQLModel, table=True):
    """One action of one trigger firing, and what came of it (pending, done, failed).

    Unique per crossing: ``armed_at`` is when the trigger was last armed for the journey (the arm row the
    run read; 0 when it has been armed since the journey began), so two runs that read the same state
    cannot both store the firing, whatever their run ids.
    """

    __tablename__ = "trigger_firings"
    __table_args__ = (
        UniqueConstraint("journey_id", "trigger", "step", "action_index", "armed_at", name="ux_firings_crossing"),
        Index("ix_firings_status", "status"),
        Index("ix_firings_run", "run_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: str
    journey_id: int = Field(index=True)
    lead_key: int
    product_line: str
    trigger: str
    step: int = 0
    direction: str  # up | down | reached | entered
    action_index: int = 0
    action: str  # notify_owner | tag | untag | enrol | exit | webhook
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    stage: str
    score: float | None = None
    score_before: float | None = None
    # The state that crossed (band, qualification level, breakdown) and the stage a promotion in the same
    # run then took the journey to: an alert describes the crossing, not the reset state after it.
    band: str | None = None
    qualification: str | None = None
    breakdown: list[Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    promoted_to: str | None = None
    fired_at: datetime = _time(nullable=False)
    armed_at: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    status: str = "pending"  # pending | done | failed
    attempts: int = 0
    outcome: str | None = None
    completed_at: datetime | None = _time()


class LeadTag(SQLModel, table=True):
    """A tag on a lead, added by a trigger (or removed: the row is deleted)."""

    __tablename__ = "lead_tags"

    lead_key: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    tag: str = Field(sa_column=Column(String, primary_key=True))
    added_at: datetime = _time(nullable=False)
    run_id: str | None = None


class EventGeneration(SQLModel, table=True):
    """The change log of the event log: bumped by triggers on ``events`` (``store/change_log.py``)."""

    __tablename__ = "event_generations"

    lead_key: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    generation: int = Field(sa_column=Column(BigInteger, nullable=False))


class EventBlockLeads(SQLModel, table=True):
    """The leads of a block a PostgreSQL statement touched when it bumped the block's counter, one row per
    bump, the last few kept (``store/change_log.py``). SQLite (row triggers) leaves it empty."""

    __tablename__ = "event_block_leads"

    block: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    generation: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    lead_keys: list[int] = Field(sa_column=Column(JSON, nullable=False))


class EventChangeEpoch(SQLModel, table=True):
    """The change log's epoch: a new one whenever changes may have gone uncounted (one row, or none)."""

    __tablename__ = "event_mirror_epoch"

    epoch: str = Field(sa_column=Column(String, primary_key=True))
