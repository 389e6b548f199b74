"""rollouts: plans, per-store targets and failed (store, device, artifact) pairs
(decision 0040)

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("target", sa.String(140), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("stores", sa.JSON(), nullable=False),
        sa.Column("canary_size", sa.BigInteger(), nullable=False),
        sa.Column("wave_size", sa.BigInteger(), nullable=False),
        sa.Column("success_pct", sa.BigInteger(), nullable=False),
        sa.Column("failure_threshold", sa.BigInteger(), nullable=False),
        sa.Column("deadline_s", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("wave", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"),
    )
    op.create_table(
        "rollout_targets",
        sa.Column("rollout_id", sa.String(64), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("wave", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("offered_ms", sa.BigInteger(), nullable=True),
        sa.Column("deadline_ms", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("rollout_id", "store_id", name="pk_rollout_targets"),
    )
    op.create_table(
        "rollout_failures",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rollout_id", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "device", "sha256", name="pk_rollout_failures"),
    )


def downgrade() -> None:
    op.drop_table("rollout_failures")
    op.drop_table("rollout_targets")
    op.drop_table("rollouts")
