"""artifacts: uploaded once, stored by sha256, with their signed manifests (decision 0036)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(140), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("signed", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_artifacts"),
        sa.UniqueConstraint("target", "version", name="uq_artifacts_target_version"),
    )


def downgrade() -> None:
    op.drop_table("artifacts")
