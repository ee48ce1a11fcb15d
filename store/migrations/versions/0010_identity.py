"""Identity: lead aliases (merges), anonymous visitors' events and their links to leads

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 23:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lead_aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merged_key", sa.Integer(), nullable=False),
        sa.Column("survivor_key", sa.Integer(), nullable=False),
        sa.Column("merged_at", sa.BigInteger(), nullable=False),
        sa.Column("unmerged_at", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("undo", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_lead_aliases_merged", "lead_aliases", ["merged_key", "unmerged_at"], unique=False)
    op.create_index(op.f("ix_lead_aliases_survivor_key"), "lead_aliases", ["survivor_key"], unique=False)
    op.create_table(
        "visitor_links",
        sa.Column("anonymous_id", sa.String(), nullable=False),
        sa.Column("lead_key", sa.Integer(), nullable=False),
        sa.Column("linked_at", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("anonymous_id"),
    )
    op.create_index(op.f("ix_visitor_links_lead_key"), "visitor_links", ["lead_key"], unique=False)
    op.create_table(
        "anonymous_events",
        sa.Column("anonymous_id", sa.String(), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("product_line", sa.String(), nullable=True),
        sa.Column("machine", sa.Boolean(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("url", sa.String(), nullable=True),
        sa.Column("form", sa.String(), nullable=True),
        sa.Column("asset", sa.String(), nullable=True),
        sa.Column("campaign", sa.String(), nullable=True),
        sa.Column("webinar", sa.String(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("points", sa.Float(), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("ingested_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("anonymous_id", "occurred_at", "event_id"),
        sqlite_with_rowid=False,
    )
    op.create_index("ux_anonymous_events_event_id", "anonymous_events", ["event_id"], unique=True)
    op.create_index("ix_anonymous_events_occurred_at", "anonymous_events", ["occurred_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_anonymous_events_occurred_at", table_name="anonymous_events")
    op.drop_index("ux_anonymous_events_event_id", table_name="anonymous_events")
    op.drop_table("anonymous_events")
    op.drop_index(op.f("ix_visitor_links_lead_key"), table_name="visitor_links")
    op.drop_table("visitor_links")
    op.drop_index(op.f("ix_lead_aliases_survivor_key"), table_name="lead_aliases")
    op.drop_index("ix_lead_aliases_merged", table_name="lead_aliases")
    op.drop_table("lead_aliases")
