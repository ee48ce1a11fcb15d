"""Console: users, the audit of console actions, sales queue decisions; journeys indexed by score

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-04 21:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


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
    op.create_index("ix_journeys_line_score", "journeys", ["product_line", "score"], unique=False)
    op.create_index("ix_journeys_score", "journeys", ["score"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_journeys_score", table_name="journeys")
    op.drop_index("ix_journeys_line_score", table_name="journeys")
    op.drop_index(op.f("ix_queue_decisions_lead_key"), table_name="queue_decisions")
    op.drop_table("queue_decisions")
    op.drop_index("ix_console_audit_lead", table_name="console_audit")
    op.drop_table("console_audit")
    op.drop_table("console_users")
