"""content manifests per store and each store's reported content status (decision 0046)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "content_manifests",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("signed", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "version", name="pk_content_manifests"),
    )
    op.create_table(
        "content_status",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("applied_version", sa.BigInteger(), nullable=True),
        sa.Column("applied_ms", sa.BigInteger(), nullable=True),
        sa.Column("price_book_version", sa.BigInteger(), nullable=True),
        sa.Column("schedule_version", sa.String(64), nullable=True),
        sa.Column("assets_present", sa.BigInteger(), nullable=False),
        sa.Column("assets_missing", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("reported_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", name="pk_content_status"),
    )


def downgrade() -> None:
    op.drop_table("content_status")
    op.drop_table("content_manifests")
