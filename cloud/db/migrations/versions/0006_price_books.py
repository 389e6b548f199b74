"""price books: immutable chain and per-store versions, signed for stores on request

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.String(64)
MS = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "price_book_versions",
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("scope", ID, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("published_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_price_book_versions"),
    )
    op.create_index("ix_price_book_versions_scope", "price_book_versions",
                    ["scope", "version"])


def downgrade() -> None:
    op.drop_index("ix_price_book_versions_scope", table_name="price_book_versions")
    op.drop_table("price_book_versions")
