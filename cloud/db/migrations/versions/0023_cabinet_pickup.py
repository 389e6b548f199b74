"""cabinet pickup: cabinets, doors reserved for orders, pickup codes (decision 0066)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cabinets",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("cabinet_id", sa.String(64), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("accepts_orders", sa.Boolean(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "cabinet_id", name="pk_cabinets"),
    )
    op.create_index("ix_cabinets_lat", "cabinets", ["lat", "lon"])
    op.create_table(
        "cabinet_doors",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("cabinet_id", sa.String(64), nullable=False),
        sa.Column("door", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("qty >= 0", name="ck_cabinet_doors_qty_nonneg"),
        sa.PrimaryKeyConstraint("store_id", "cabinet_id", "door", name="pk_cabinet_doors"),
    )
    op.create_table(
        "cabinet_pickups",
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("cabinet_id", sa.String(64), nullable=False),
        sa.Column("door", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_cabinet_pickups"),
    )
    op.create_index("ix_cabinet_pickups_cabinet", "cabinet_pickups",
                    ["store_id", "cabinet_id", "status"])
    op.create_table(
        "cabinet_vends",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("cabinet_id", sa.String(64), nullable=False),
        sa.Column("door", sa.Integer(), nullable=False),
        sa.Column("moved", sa.Boolean(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "event_id", name="pk_cabinet_vends"),
    )


def downgrade() -> None:
    op.drop_table("cabinet_vends")
    op.drop_index("ix_cabinet_pickups_cabinet", table_name="cabinet_pickups")
    op.drop_table("cabinet_pickups")
    op.drop_table("cabinet_doors")
    op.drop_index("ix_cabinets_lat", table_name="cabinets")
    op.drop_table("cabinets")
