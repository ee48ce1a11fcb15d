"""run safety: run locks, who ran a run, firings unique per crossing

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 20:30:00

Firings stored before this revision get ``armed_at = -id``: their crossing is not known, and a
negative value can never equal the arm time (0 or an epoch time) of a later firing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_locks",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("host", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("note", sa.String(), nullable=True))

    with op.batch_alter_table("trigger_firings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("armed_at", sa.BigInteger(), server_default="0", nullable=False))
    op.execute("UPDATE trigger_firings SET armed_at = -id")
    with op.batch_alter_table("trigger_firings", schema=None) as batch_op:
        batch_op.drop_constraint("ux_firings_natural", type_="unique")
        batch_op.create_unique_constraint(
            "ux_firings_crossing", ["journey_id", "trigger", "step", "action_index", "armed_at"]
        )
        batch_op.create_index("ix_firings_run", ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trigger_firings", schema=None) as batch_op:
        batch_op.drop_index("ix_firings_run")
        batch_op.drop_constraint("ux_firings_crossing", type_="unique")
        batch_op.create_unique_constraint(
            "ux_firings_natural", ["run_id", "journey_id", "trigger", "step", "action_index"]
        )
        batch_op.drop_column("armed_at")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("note")
        batch_op.drop_column("pid")
        batch_op.drop_column("host")
        batch_op.drop_column("scope")
    op.drop_table("run_locks")
