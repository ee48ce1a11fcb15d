"""The outbox: every email leadscore rendered, with its delivery status and attempts."""

from datetime import datetime

from sqlalchemy import Column, Index, String
from sqlmodel import Field, SQLModel

from store.tables import _time


class OutboxMessage(SQLModel, table=True):
    """One email, keyed by its stable Message-ID (derived from ``kind|ref``, so a cause sends once).

    ``status``: ``intent`` is written before the server is contacted; a row still in ``intent`` after
    its run ended has an unknown outcome and counts as sent (at-most-once, DESIGN §8).
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status", "status"), Index("ix_outbox_lead", "lead_key", "kind"))

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(sa_column=Column(String, unique=True, nullable=False))
    kind: str  # owner_alert | nurture
    ref: str  # firing:<id> | enrolment:<id>:<step>
    lead_key: int
    run_id: str = Field(index=True)
    to_address: str
    subject: str
    status: str = "intent"  # intent | sent | failed | bounced
    attempts: int = 0
    last_error: str | None = None
    path: str | None = None
    created_at: datetime = _time(nullable=False)
    sent_at: datetime | None = _time()
