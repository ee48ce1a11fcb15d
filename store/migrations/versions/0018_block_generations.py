"""Change log: a PostgreSQL statement that touches many leads of a block bumps the block's counter

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-06 00:00:00

The statement triggers on ``events`` upserted one counter per lead a statement touched: half the
server's work of a bulk ``COPY``. Their new function (``store/change_log.py``) bumps one counter per
block of lead keys where a statement touched many of its leads. The triggers are installed by the
code on first use, with a new epoch whenever one is missing: dropping them here makes the next run
install the new function (and ignore event-cache files of the old epoch, rebuilt once). SQLite's row
triggers are unchanged.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0016"
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
    op.execute("DELETE FROM event_generations WHERE lead_key < 0")


def upgrade() -> None:
    _drop_postgresql_triggers()


def downgrade() -> None:
    _drop_postgresql_triggers()  # the older code reinstalls its own function, with a new epoch
