"""PostgreSQL: the number of distinct ``events.message_id`` values set as a share of the rows

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 00:00:00

``ANALYZE`` estimates distinct values from a sample of 30,000 rows, and for a column whose values each
come back a few times (a message's sent, delivered, opened and clicked events) it guesses an order of
magnitude too few: 187,630 for the 2,387,466 message ids among 19.8M events of the 1M-lead benchmark.
The planner then expects each id looked up to match ≈ 35 rows, and the machine-activity detector's
look-up of 50,000 ids scanned the whole table (5.3 s) instead of probing the partial index (2.1 s). A
negative ``n_distinct`` is a share of the rows, so it follows the table as it grows: one distinct id
per ten events (the benchmark's is one per 8.3; fewer email events make it smaller, which only makes
the index look cheaper, as it is for look-ups of given ids). SQLite has no such statistic to set.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | Sequence[str] | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHARE = -0.1  # distinct ids per row


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgresql():
        op.execute(f"ALTER TABLE events ALTER COLUMN message_id SET (n_distinct = {SHARE})")


def downgrade() -> None:
    if _postgresql():
        op.execute("ALTER TABLE events ALTER COLUMN message_id RESET (n_distinct)")
