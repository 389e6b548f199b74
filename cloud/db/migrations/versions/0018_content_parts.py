"""content status per part (price book, schedule, playlists) and shelf-label counts

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("content_status") as batch:
        batch.add_column(sa.Column("parts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("content_status") as batch:
        batch.drop_column("labels")
        batch.drop_column("parts")
