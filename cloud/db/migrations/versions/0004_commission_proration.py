"""commissions reversed in proportion to partial returns: base, running totals and one
row per return

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.String(64)
KEY = sa.String(128)
MS = sa.BigInteger()


def upgrade() -> None:
    with op.batch_alter_table("commissions") as batch:
        batch.add_column(sa.Column("base_paid", sa.BigInteger(), nullable=True))
        # server_default only to fill existing rows; the ORM always writes a value.
        batch.add_column(sa.Column("refunded_paid", sa.BigInteger(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("reversed_points", sa.BigInteger(), nullable=False,
                                   server_default="0"))
    op.create_table(
        "commission_reversals",
        sa.Column("commission_id", ID, nullable=False),
        sa.Column("refund_id", KEY, nullable=False),
        sa.Column("refunded_paid", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("commission_id", "refund_id", name="pk_commission_reversals"),
    )


def downgrade() -> None:
    op.drop_table("commission_reversals")
    with op.batch_alter_table("commissions") as batch:
        batch.drop_column("reversed_points")
        batch.drop_column("refunded_paid")
        batch.drop_column("base_paid")
