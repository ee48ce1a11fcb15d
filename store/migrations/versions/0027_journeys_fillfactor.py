"""Journeys on PostgreSQL: pages filled to 80 %, so that moving a journey's opening time back is a HOT update

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 00:00:00

A load of events moves back the opening time of the journeys its leads' load opened (months-old events
arriving after the lead). Those columns are in no index, but a row that does not fit on its own page
gets a new entry in each of the table's ten indexes: 285,665 journeys moved back by 1M demo events took
8.1–8.3 s with full pages against 1.9–2.2 s with this free space (nearly all of them HOT), and the table
with its indexes came out smaller (549 against 699 MB). Pages written from now on get the free space;
existing ones keep theirs until the table is rewritten (``VACUUM FULL``). SQLite updates only the
indexes whose columns change: nothing to do there.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027"
down_revision: str | Sequence[str] | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE journeys SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE journeys RESET (fillfactor)")
