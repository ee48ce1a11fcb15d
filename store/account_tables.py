"""Tables of accounts: the companies leads belong to, their score history, membership and trigger state.

A lead's account is its ``account_id`` or, when it has none, its email domain outside the free-mail
list (``stages.account_spec``); the accounts run records the membership it used (``account_members``)
so that audiences can select the members of the hot accounts in SQL.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.tables import EpochMicros, _time


class Account(SQLModel, table=True):
    """A company from an accounts file; free columns are ``attributes`` (like a lead's)."""

    __tablename__ = "accounts"

    key: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    account_id: str = Field(sa_column=Column(String, unique=True, nullable=False))
    name: str | None = None
    domain: str | None = Field(default=None, index=True)
    industry: str | None = None
    employees: float | None = None
    region: str | None = None
    owner: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime | None = _time()
    updated_at: datetime | None = _time()


class AccountScore(SQLModel, table=True):
    """An account's score history in one product line: a row each time its score, band or qualifications
    changed, with the breakdown (rule, points) and the roll-up figures it came from."""

    __tablename__ = "account_scores"
    __table_args__ = (Index("ix_account_scores_line_account_as_of", "product_line", "account_id", "as_of"),)

    id: int | None = Field(default=None, primary_key=True)
    product_line: str
    account_id: str
    run_id: str = Field(index=True)
    as_of: datetime = _time(nullable=False)
    score: float
    band: str | None = None
    qualifications: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    members: int = 0
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    breakdown: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class AccountMember(SQLModel, table=True):
    """Which account each lead belonged to at the last accounts run (how: ``account_id`` or ``domain``)."""

    __tablename__ = "account_members"

    lead_key: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    account_id: str = Field(index=True)
    source: str
    as_of: datetime = _time(nullable=False)


class AccountTriggerArm(SQLModel, table=True):
    """An account trigger's arm state, stored only where the account's previous state cannot imply it."""

    __tablename__ = "account_trigger_arms"

    product_line: str = Field(sa_column=Column(String, primary_key=True))
    account_id: str = Field(sa_column=Column(String, primary_key=True))
    trigger: str = Field(sa_column=Column(String, primary_key=True))
    armed: bool
    as_of: datetime = _time(nullable=False)


class AccountFiring(SQLModel, table=True):
    """One action of an account trigger firing; ``members`` names the members and their top reasons.
    Unique per crossing (``armed_at``: when the trigger was last armed), like lead firings."""

    __tablename__ = "account_firings"
    __table_args__ = (
        UniqueConstraint(
            "product_line", "account_id", "trigger", "action_index", "armed_at", name="ux_account_firings_crossing"
        ),
        Index("ix_account_firings_status", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: str
    product_line: str
    account_id: str
    trigger: str
    direction: str
    action_index: int = 0
    action: str
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    score: float | None = None
    score_before: float | None = None
    band: str | None = None
    qualifications: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    members: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    fired_at: datetime = Field(sa_column=Column(EpochMicros(), nullable=False))
    armed_at: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    status: str = "pending"
    attempts: int = 0
    outcome: str | None = None
    completed_at: datetime | None = _time()
