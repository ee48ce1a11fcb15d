"""The event log's change log: per-lead generations bumped by triggers, and the epoch they count in;
journeys indexed by (product line, lead key), the range every scoring task reads

The triggers themselves are installed by ``store/change_log.py`` on first use (with a fresh epoch),
so a store whose triggers went missing repairs itself; this revision declares the tables. A SQLite
store that already made them on the fly loses them and its triggers: the next scoring run reinstalls
both and rebuilds its event cache once.

Revision ID: 0013
Revises: 0009
Create Date: 2026-12-05 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGERS = ("event_generations_insert", "event_generations_update", "event_generations_delete")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS event_generations")
        op.execute("DROP TABLE IF EXISTS event_mirror_epoch")
    op.create_table(
        "event_generations",
        sa.Column("lead_key", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("lead_key"),
    )
    op.create_table(
        "event_mirror_epoch",
        sa.Column("epoch", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("epoch"),
    )
    op.create_index("ix_journeys_line_lead", "journeys", ["product_line", "lead_key"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_journeys_line_lead", table_name="journeys")
    if op.get_bind().dialect.name == "postgresql":
        for name in (*TRIGGERS, "event_generations_truncate"):
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON events")
        op.execute("DROP FUNCTION IF EXISTS leadscore_event_generations()")
    else:
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("event_mirror_epoch")
    op.drop_table("event_generations")
