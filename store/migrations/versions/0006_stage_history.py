"""stage history: a snapshot per crossing step, firings carry the crossing state, arm log, entry reason

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-04 20:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("score_snapshots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step", sa.Integer(), server_default="0", nullable=False))
        batch_op.drop_index("ix_snapshots_journey_run")
        batch_op.create_index("ix_snapshots_journey_run_step", ["journey_id", "run_id", "step"], unique=True)
    with op.batch_alter_table("journeys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("entered_by", sa.String(), nullable=True))
    with op.batch_alter_table("trigger_firings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("band", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("qualification", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("breakdown", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("promoted_to", sa.String(), nullable=True))
    op.create_table(
        "trigger_arm_log",
        sa.Column("journey_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("trigger", sa.String(), nullable=False),
        sa.Column("as_of", sa.BigInteger(), nullable=False),
        sa.Column("armed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("journey_id", "trigger", "as_of"),
    )


def downgrade() -> None:
    op.drop_table("trigger_arm_log")
    with op.batch_alter_table("trigger_firings", schema=None) as batch_op:
        batch_op.drop_column("promoted_to")
        batch_op.drop_column("breakdown")
        batch_op.drop_column("qualification")
        batch_op.drop_column("band")
    with op.batch_alter_table("journeys", schema=None) as batch_op:
        batch_op.drop_column("entered_by")
    with op.batch_alter_table("score_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_snapshots_journey_run_step")
        batch_op.create_index("ix_snapshots_journey_run", ["journey_id", "run_id"], unique=True)
        batch_op.drop_column("step")
