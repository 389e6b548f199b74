"""members at the store: home stores and spends authorised or settled (decision 0064)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "member_home_stores",
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name="pk_member_home_stores"),
    )
    op.create_index("ix_member_home_stores_store", "member_home_stores",
                    ["store_id", "member_id"])
    op.create_table(
        "member_spends",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("spend_id", sa.String(40), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("taken", sa.BigInteger(), nullable=False),
        sa.Column("shortfall", sa.BigInteger(), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spent_ms", sa.BigInteger(), nullable=False),
        sa.Column("recorded_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "spend_id", name="pk_member_spends"),
    )
    op.create_index("ix_member_spends_member", "member_spends",
                    ["member_id", "unit", "status"])
    op.create_index("ix_member_spends_store", "member_spends", ["store_id", "recorded_ms"])


def downgrade() -> None:
    op.drop_index("ix_member_spends_store", table_name="member_spends")
    op.drop_index("ix_member_spends_member", table_name="member_spends")
    op.drop_table("member_spends")
    op.drop_index("ix_member_home_stores_store", table_name="member_home_stores")
    op.drop_table("member_home_stores")
