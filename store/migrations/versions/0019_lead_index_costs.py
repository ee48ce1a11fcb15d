"""Leads: the console's search indexes hold only the leads that have the field; leads.account_id unindexed

Revision ID: 0019
Revises: 0016
Create Date: 2026-12-06 00:00:00

Every lead written costs one B-tree insert per index. The four ``lower(field)`` indexes of the console's
search held a NULL entry for every lead without the field (a file that leaves ``company`` out wrote
one per lead for nothing); the search's range on ``lower(field)`` implies it is not NULL, so both
databases still use the partial indexes for it. ``ix_leads_account_id`` served no query at all: account
membership is computed from a scan of every lead (``store.accounts.read_account_leads``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCHED = ("email", "first_name", "last_name", "company")


def upgrade() -> None:
    op.drop_index("ix_leads_account_id", table_name="leads")
    for column in SEARCHED:
        op.drop_index(f"ix_leads_{column}_lower", table_name="leads")
        present = sa.text(f"lower({column}) IS NOT NULL")
        op.create_index(
            f"ix_leads_{column}_lower",
            "leads",
            [sa.text(f"lower({column})")],
            sqlite_where=present,
            postgresql_where=present,
        )


def downgrade() -> None:
    for column in SEARCHED:
        op.drop_index(f"ix_leads_{column}_lower", table_name="leads")
        op.create_index(f"ix_leads_{column}_lower", "leads", [sa.text(f"lower({column})")])
    op.create_index("ix_leads_account_id", "leads", ["account_id"])
