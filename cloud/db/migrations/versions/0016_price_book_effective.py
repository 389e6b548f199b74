"""price books at scale: a version's effective time (decision 0047)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: books published before it are effective when the store has them.
    with op.batch_alter_table("price_book_versions") as batch:
        batch.add_column(sa.Column("effective_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("price_book_versions") as batch:
        batch.drop_column("effective_ms")
