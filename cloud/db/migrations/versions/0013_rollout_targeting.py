"""rollout targeting: store groups, store maintenance windows, a device per target and
the selection a rollout was made from (decision 0043)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_groups",
        sa.Column("group_id", sa.String(64), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "store_id", name="pk_store_groups"),
    )
    op.create_table(
        "store_maintenance",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("start_min", sa.BigInteger(), nullable=False),
        sa.Column("end_min", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", name="pk_store_maintenance"),
    )
    # Nullable: rollouts made before this release have one device for all and no
    # recorded selection.
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("selection", sa.JSON(), nullable=True))
    with op.batch_alter_table("rollout_targets") as batch:
        batch.add_column(sa.Column("device", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rollout_targets") as batch:
        batch.drop_column("device")
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("selection")
    op.drop_table("store_maintenance")
    op.drop_table("store_groups")
