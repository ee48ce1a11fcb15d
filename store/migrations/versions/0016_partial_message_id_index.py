"""Events: the message_id index holds only the events that have one

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 00:00:00

Page views, downloads and form fills carry no message id, yet every one of them was written into the
index as a NULL entry: on a bulk load that is one more B-tree insert per row for nothing (≈ 10 % of
PostgreSQL's ``COPY`` into ``events``). Every reader of the index asks for given message ids (machine
detection's look-up, the nurture report's join), which implies ``message_id IS NOT NULL``, so both
databases still use the partial index for them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAMED = sa.text("message_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_events_message_id", table_name="events")
    op.create_index("ix_events_message_id", "events", ["message_id"], sqlite_where=_NAMED, postgresql_where=_NAMED)


def downgrade() -> None:
    op.drop_index("ix_events_message_id", table_name="events")
    op.create_index("ix_events_message_id", "events", ["message_id"])
