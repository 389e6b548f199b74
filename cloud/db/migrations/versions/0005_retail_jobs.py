"""retail jobs: scheduler leases; coupons marked when they lapse unused

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.String(64)
KEY = sa.String(128)
MS = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "job_leases",
        sa.Column("name", ID, nullable=False),
        sa.Column("holder", KEY, nullable=True),
        sa.Column("until_ms", MS, nullable=False),
        sa.Column("last_run_ms", MS, nullable=True),
        sa.Column("last_rows", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_job_leases"),
    )
    with op.batch_alter_table("coupons") as batch:
        batch.add_column(sa.Column("expired_ms", MS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("coupons") as batch:
        batch.drop_column("expired_ms")
    op.drop_table("job_leases")
