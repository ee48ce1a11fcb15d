"""Console: users, the audit of console actions, sales queue decisions; journeys by score, leads by search

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 21:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOURNEY_COLUMNS = ("product_line", "stage", "band", "qualification")  # the list's filters, each with the score
LEAD_COLUMNS = ("email", "first_name", "last_name", "company")  # searched by prefix, case-insensitive


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("disabled_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("email"),
    )
    op.create_table(
        "console_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("lead_key", sa.Integer(), nullable=True),
        sa.Column("product_line", sa.String(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_console_audit_lead", "console_audit", ["lead_key", "at"], unique=False)
    op.create_table(
        "queue_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("journey_id", sa.Integer(), nullable=False),
        sa.Column("lead_key", sa.Integer(), nullable=False),
        sa.Column("product_line", sa.String(), nullable=False),
        sa.Column("qualification", sa.String(), nullable=False),
        sa.Column("decision", sa.String(), nullable=False),
        sa.Column("reason_code", sa.String(), nullable=True),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("journey_id", "qualification", name="ux_queue_decisions_journey"),
    )
    op.create_index(op.f("ix_queue_decisions_lead_key"), "queue_decisions", ["lead_key"], unique=False)
    for column in JOURNEY_COLUMNS:
        op.create_index(f"ix_journeys_{column}_score", "journeys", [column, "score"], unique=False)
    op.create_index("ix_journeys_score", "journeys", ["score"], unique=False)
    for column in LEAD_COLUMNS:
        op.create_index(f"ix_leads_{column}_lower", "leads", [sa.text(f"lower({column})")], unique=False)


def downgrade() -> None:
    for column in LEAD_COLUMNS:
        op.drop_index(f"ix_leads_{column}_lower", table_name="leads")
    op.drop_index("ix_journeys_score", table_name="journeys")
    for column in JOURNEY_COLUMNS:
        op.drop_index(f"ix_journeys_{column}_score", table_name="journeys")
    op.drop_index(op.f("ix_queue_decisions_lead_key"), table_name="queue_decisions")
    op.drop_table("queue_decisions")
    op.drop_index("ix_console_audit_lead", table_name="console_audit")
    op.drop_table("console_audit")
    op.drop_table("console_users")
