"""Accounts: the accounts file, a lead's account_id, account score history, membership and trigger state

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-05 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("account_id", sa.String(), nullable=True))
        batch.create_index(batch.f("ix_leads_account_id"), ["account_id"], unique=False)
    op.create_table(
        "accounts",
        sa.Column("key", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("domain", sa.String(), nullable=True),
        sa.Column("industry", sa.String(), nullable=True),
        sa.Column("employees", sa.Float(), nullable=True),
        sa.Column("region", sa.String(), nullable=True),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
        sa.UniqueConstraint("account_id"),
    )
    op.create_index(op.f("ix_accounts_domain"), "accounts", ["domain"], unique=False)
    op.create_table(
        "account_scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_line", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("as_of", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("band", sa.String(), nullable=True),
        sa.Column("qualifications", sa.JSON(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("breakdown", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_account_scores_line_account_as_of", "account_scores", ["product_line", "account_id", "as_of"], unique=False
    )
    op.create_index(op.f("ix_account_scores_run_id"), "account_scores", ["run_id"], unique=False)
    op.create_table(
        "account_members",
        sa.Column("lead_key", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("as_of", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("lead_key"),
    )
    op.create_index(op.f("ix_account_members_account_id"), "account_members", ["account_id"], unique=False)
    op.create_table(
        "account_trigger_arms",
        sa.Column("product_line", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("trigger", sa.String(), nullable=False),
        sa.Column("armed", sa.Boolean(), nullable=False),
        sa.Column("as_of", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("product_line", "account_id", "trigger"),
    )
    op.create_table(
        "account_firings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("product_line", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("trigger", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("action_index", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("score_before", sa.Float(), nullable=True),
        sa.Column("band", sa.String(), nullable=True),
        sa.Column("qualifications", sa.JSON(), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("fired_at", sa.BigInteger(), nullable=False),
        sa.Column("armed_at", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("completed_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "product_line", "account_id", "trigger", "action_index", "armed_at", name="ux_account_firings_crossing"
        ),
    )
    op.create_index("ix_account_firings_status", "account_firings", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_account_firings_status", table_name="account_firings")
    op.drop_table("account_firings")
    op.drop_table("account_trigger_arms")
    op.drop_index(op.f("ix_account_members_account_id"), table_name="account_members")
    op.drop_table("account_members")
    op.drop_index(op.f("ix_account_scores_run_id"), table_name="account_scores")
    op.drop_index("ix_account_scores_line_account_as_of", table_name="account_scores")
    op.drop_table("account_scores")
    op.drop_index(op.f("ix_accounts_domain"), table_name="accounts")
    op.drop_table("accounts")
    with op.batch_alter_table("leads") as batch:
        batch.drop_index(batch.f("ix_leads_account_id"))
        batch.drop_column("account_id")
