"""priced and paid online orders, stock kept true by sales (decision 0067)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

ID = sa.String(64)
MS = sa.BigInteger()


def upgrade() -> None:
    # Added columns are nullable or defaulted: orders placed before stay readable
    # (unpriced, ``at_store``). SQLite adds columns without a table rebuild this way.
    op.add_column("orders", sa.Column("currency", sa.String(3), nullable=True))
    op.add_column("orders", sa.Column("total", sa.BigInteger(), nullable=True))
    op.add_column("orders", sa.Column("priced", sa.JSON(), nullable=True))
    op.add_column("orders", sa.Column("payment", sa.String(16), nullable=False,
                                      server_default="at_store"))
    op.add_column("orders", sa.Column("paid_ms", MS, nullable=True))
    op.add_column("orders", sa.Column("payment_ref", sa.String(128), nullable=True))
    op.create_index("uq_orders_payment_ref", "orders", ["payment_ref"], unique=True)
    op.create_index("ix_orders_payment_created", "orders", ["payment", "created_ms"])
    op.add_column("stock", sa.Column("counted_ms", MS, nullable=True))
    op.create_table(
        "stock_moves",
        sa.Column("store_id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("applied_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("store_id", "event_id", name="pk_stock_moves"),
    )


def downgrade() -> None:
    op.drop_table("stock_moves")
    with op.batch_alter_table("stock") as batch:
        batch.drop_column("counted_ms")
    op.drop_index("ix_orders_payment_created", table_name="orders")
    op.drop_index("uq_orders_payment_ref", table_name="orders")
    with op.batch_alter_table("orders") as batch:  # SQLite drops columns by a rebuild
        for column in ("payment_ref", "paid_ms", "payment", "priced", "total", "currency"):
            batch.drop_column(column)
