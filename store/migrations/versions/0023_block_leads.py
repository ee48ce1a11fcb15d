"""Change log: each block-counter bump of PostgreSQL's triggers keeps the leads it stands for

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 00:00:00

A PostgreSQL statement that touches many leads of a block bumps the block's counter (0018), and a reader
of the event cache then re-read the whole block: a day's increment of 25,000 events of existing leads
in a 200k-lead store crossed that threshold in a third of the blocks, and those re-reads were the
largest part of the daily score step. The new trigger function (``store/change_log.py``) also writes
the touched leads of each bumped block to ``event_block_leads``; the reader re-reads only those. As in
0018, dropping the triggers makes the next run install the new function (with a new epoch: the cache
files of the old one are rebuilt once). SQLite's row triggers are unchanged and never fill the table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGERS = (
    "event_generations_insert",
    "event_generations_update",
    "event_generations_delete",
    "event_generations_truncate",
)


def _drop_postgresql_triggers() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON events")
    op.execute("DROP FUNCTION IF EXISTS leadscore_event_generations()")


def upgrade() -> None:
    _drop_postgresql_triggers()
    op.create_table(
        "event_block_leads",
        sa.Column("block", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("lead_keys", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("block", "generation"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Stored uncompressed: compressing a bulk load's lists (≈ 16,000 keys a block and statement) made
        # its trigger ≈ 40 % slower (200,000 events of 200,000 leads: 0.6 → 0.85–1.3 s, back to 0.55–0.57).
        op.execute("ALTER TABLE event_block_leads ALTER COLUMN lead_keys SET STORAGE EXTERNAL")


def downgrade() -> None:
    _drop_postgresql_triggers()  # the older code reinstalls its own function, with a new epoch
    op.drop_table("event_block_leads")
