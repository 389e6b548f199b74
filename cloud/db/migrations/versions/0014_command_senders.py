"""commands: who sent each one and why (decision 0044)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: commands sent before this release have no recorded sender.
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("sender", sa.String(128), nullable=True))
        batch.add_column(sa.Column("sender_role", sa.String(32), nullable=True))
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("commands") as batch:
        batch.drop_column("reason")
        batch.drop_column("sender_role")
        batch.drop_column("sender")
