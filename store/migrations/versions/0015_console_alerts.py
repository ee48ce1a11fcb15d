"""Console alerts: overdue queue items alerted once; milestones by qualification and time

Revision ID: 0015
Revises: 0009
Create Date: 2026-12-05 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queue_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("journey_id", sa.Integer(), nullable=False),
        sa.Column("lead_key", sa.Integer(), nullable=False),
        sa.Column("qualification", sa.String(), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=False),
        sa.Column("to_address", sa.String(), nullable=True),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("alerted_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("journey_id", "qualification", name="ux_queue_alerts_journey"),
    )
    op.create_index(
        "ix_milestones_qualification_reached",
        "qualification_milestones",
        ["qualification", "reached_at", "journey_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_milestones_qualification_reached", table_name="qualification_milestones")
    op.drop_table("queue_alerts")
