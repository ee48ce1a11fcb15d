"""Tables of the HTTP service: its API keys, and the provider webhook deliveries already taken (replays)."""

from datetime import datetime

from sqlalchemy import JSON, Column, String
from sqlmodel import Field, SQLModel

from store.tables import _time


class ApiKey(SQLModel, table=True):
    """An API key: only the SHA-256 of its secret part is kept, so a leaked store leaks no usable key."""

    __tablename__ = "api_keys"

    key_id: str = Field(sa_column=Column(String, primary_key=True))
    name: str
    secret_hash: str
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _time(nullable=False)
    revoked_at: datetime | None = _time()


class WebhookReceipt(SQLModel, table=True):
    """A provider webhook delivery already accepted, by the provider's own id of it: a replay is refused."""

    __tablename__ = "webhook_receipts"

    provider: str = Field(sa_column=Column(String, primary_key=True))
    receipt_id: str = Field(sa_column=Column(String, primary_key=True))
    received_at: datetime = _time(nullable=False)
