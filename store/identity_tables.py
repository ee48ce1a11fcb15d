"""Identity tables: merged leads (aliases), anonymous visitors' events and the links that attach a
visitor to a lead. Events are never rewritten: these tables say whose events count, when reading."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, String, Table
from sqlmodel import Field, SQLModel

from store.tables import Event, _time


class LeadAlias(SQLModel, table=True):
    """``merged_key`` counts as ``survivor_key`` from ``merged_at`` until ``unmerged_at`` (kept after an
    unmerge, so a replay of any date knows whether the two leads were one then). ``undo`` holds what the
    merge changed outside the alias mapping (journey statuses, journeys it opened) for the unmerge."""

    __tablename__ = "lead_aliases"
    __table_args__ = (Index("ix_lead_aliases_merged", "merged_key", "unmerged_at"),)

    id: int | None = Field(default=None, primary_key=True)
    merged_key: int
    survivor_key: int = Field(index=True)
    merged_at: datetime = _time(nullable=False)
    unmerged_at: datetime | None = _time()
    source: str
    undo: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class VisitorLink(SQLModel, table=True):
    """An anonymous visitor identified as a lead (by an ``identify`` event or a lead's ``anonymous_ids``)."""

    __tablename__ = "visitor_links"

    anonymous_id: str = Field(sa_column=Column(String, primary_key=True))
    lead_key: int = Field(index=True)
    linked_at: datetime = _time(nullable=False)
    source: str


# Anonymous events have the event log's columns with the visitor instead of the lead, clustered by visitor
# (WITHOUT ROWID on SQLite) so that a linked visitor's events are one range scan.
ANONYMOUS_EVENTS = Table(
    "anonymous_events",
    SQLModel.metadata,
    Column("anonymous_id", String, primary_key=True),
    *[column._copy() for column in Event.__table__.columns if column.name != "lead_key"],  # type: ignore[attr-defined]
    Index("ux_anonymous_events_event_id", "event_id", unique=True),
    Index("ix_anonymous_events_occurred_at", "occurred_at"),
    sqlite_with_rowid=False,
)
