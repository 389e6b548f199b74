"""orders: store locations, stock, online orders and their status events; offline
coupon code ranges, their redemptions and flags

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(64)
KEY = sa.String(128)
MS = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "store_locations",
        sa.Column("store_id", ID, nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("accepts_orders", sa.Boolean(), nullable=False),
        sa.Column("updated_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("store_id", name="pk_store_locations"),
    )
    op.create_table(
        "stock",
        sa.Column("store_id", ID, nullable=False),
        sa.Column("sku", ID, nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("updated_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("store_id", "sku", name="pk_stock"),
        sa.CheckConstraint("qty >= 0", name="ck_stock_qty_nonneg"),
    )
    op.create_table(
        "orders",
        sa.Column("order_id", ID, nullable=False),
        sa.Column("idempotency_key", KEY, nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("fulfilment", sa.String(16), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("customer", sa.JSON(), nullable=False),
        sa.Column("member_id", ID, nullable=True),
        sa.Column("note", sa.String(300), nullable=False),
        sa.Column("distance_m", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", MS, nullable=False),
        sa.Column("updated_ms", MS, nullable=False),
        sa.Column("dispatch", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_orders"),
        sa.UniqueConstraint("idempotency_key", name="uq_orders_idempotency_key"),
    )
    op.create_index("ix_orders_store_status", "orders", ["store_id", "status"])
    op.create_index("ix_orders_created", "orders", ["created_ms", "order_id"])
    op.create_table(
        "order_status_events",
        sa.Column("event_id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("from_status", sa.String(24), nullable=True),
        sa.Column("to_status", sa.String(24), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("ts", MS, nullable=False),
        sa.Column("received_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_order_status_events"),
    )
    op.create_index("ix_order_status_events_order", "order_status_events", ["order_id", "ts"])
    op.create_table(
        "coupon_ranges",
        sa.Column("range_id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("engine_code", ID, nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("first", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", MS, nullable=False),
        sa.Column("allocated_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("range_id", name="pk_coupon_ranges"),
        sa.UniqueConstraint("prefix", name="uq_coupon_ranges_prefix"),
    )
    op.create_index("ix_coupon_ranges_store", "coupon_ranges", ["store_id"])
    op.create_table(
        "offline_redemptions",
        sa.Column("code", ID, nullable=False),
        sa.Column("range_id", ID, nullable=True),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("sale_id", ID, nullable=True),
        sa.Column("redeemed_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_offline_redemptions"),
        sa.UniqueConstraint("event_id", name="uq_offline_redemptions_event_id"),
    )
    op.create_table(
        "coupon_flags",
        sa.Column("event_id", ID, nullable=False),
        sa.Column("code", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("reason", sa.String(24), nullable=False),
        sa.Column("first_event_id", ID, nullable=True),
        sa.Column("detected_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_coupon_flags"),
    )
    op.create_index("ix_coupon_flags_code", "coupon_flags", ["code"])


def downgrade() -> None:
    op.drop_index("ix_coupon_flags_code", table_name="coupon_flags")
    op.drop_table("coupon_flags")
    op.drop_table("offline_redemptions")
    op.drop_index("ix_coupon_ranges_store", table_name="coupon_ranges")
    op.drop_table("coupon_ranges")
    op.drop_index("ix_order_status_events_order", table_name="order_status_events")
    op.drop_table("order_status_events")
    op.drop_index("ix_orders_created", table_name="orders")
    op.drop_index("ix_orders_store_status", table_name="orders")
    op.drop_table("orders")
    op.drop_table("stock")
    op.drop_table("store_locations")
