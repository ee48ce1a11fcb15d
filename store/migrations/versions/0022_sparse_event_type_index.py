"""Events: a partial index on the few event types read by type alone over the whole store

Revision ID: 0022
Revises: 0019
Create Date: 2026-12-06 00:00:00

Nurture's suppressions (unsubscribes, resubscribes, complaints, bounces) and the report's served content
were read by a scan of every event: at 20M events that scan is most of both steps' time, every day,
for well under 1 % of the rows. The index holds only those types (``store.sparse_events.SPARSE_EVENT_TYPES``),
so a bulk load of page views and email events writes nothing into it. The list is written out here, not
imported: a revision keeps describing the schema of its day.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SPARSE = sa.text("type IN ('unsubscribe', 'resubscribe', 'spam_complaint', 'email_bounce', 'content_served')")


def upgrade() -> None:
    op.create_index(
        "ix_events_sparse_type", "events", ["type", "occurred_at"], sqlite_where=_SPARSE, postgresql_where=_SPARSE
    )


def downgrade() -> None:
    op.drop_index("ix_events_sparse_type", table_name="events")
