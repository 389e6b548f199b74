"""loyalty and promotions: members, points ledger, tiers, coupons, stored value,
commissions, promotions and their immutable publications, re-pricing mismatches

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(64)
KEY = sa.String(128)
MS = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "store_regions",
        sa.Column("store_id", ID, nullable=False),
        sa.Column("region", ID, nullable=False),
        sa.PrimaryKeyConstraint("store_id", name="pk_store_regions"),
    )
    op.create_index("ix_store_regions_region", "store_regions", ["region"])
    op.create_table(
        "members",
        sa.Column("member_id", ID, nullable=False),
        sa.Column("phone_hash", sa.String(64), nullable=True),
        sa.Column("created_ms", MS, nullable=False),
        sa.Column("referred_by", ID, nullable=True),
        sa.Column("recruited_by", ID, nullable=True),
        sa.Column("is_distributor", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name="pk_members"),
        sa.UniqueConstraint("phone_hash", name="uq_members_phone_hash"),
    )
    op.create_table(
        "points_ops",
        sa.Column("op_id", KEY, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("op_id", name="pk_points_ops"),
    )
    op.create_index("ix_points_ops_member_id", "points_ops", ["member_id"])
    op.create_table(
        "points_ledger",
        sa.Column("id", ID, nullable=False),
        sa.Column("op_id", KEY, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", MS, nullable=False),
        sa.Column("expires_ms", MS, nullable=True),
        sa.Column("lot_id", ID, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_points_ledger"),
    )
    op.create_index("ix_points_ledger_member", "points_ledger", ["member_id", "created_ms"])
    op.create_index("ix_points_ledger_lot", "points_ledger", ["lot_id"])
    op.create_table(
        "tiers",
        sa.Column("name", ID, nullable=False),
        sa.Column("min_points", sa.BigInteger(), nullable=False),
        sa.Column("multiplier_bp", sa.Integer(), nullable=False),
        sa.Column("discount_bp", sa.Integer(), nullable=False),
        sa.Column("prices", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_tiers"),
    )
    op.create_table(
        "campaigns",
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("engine_code", ID, nullable=False),
        sa.Column("benefit", sa.JSON(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("validity_days", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", name="pk_campaigns"),
        sa.UniqueConstraint("engine_code", name="uq_campaigns_engine_code"),
    )
    op.create_table(
        "coupons",
        sa.Column("code", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("source_key", KEY, nullable=False),
        sa.Column("issued_ms", MS, nullable=False),
        sa.Column("expires_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_coupons"),
        sa.UniqueConstraint("campaign_id", "member_id", "source_key",
                            name="uq_coupons_campaign_member_source"),
    )
    op.create_index("ix_coupons_member", "coupons", ["member_id", "issued_ms"])
    op.create_table(
        "coupon_redemptions",
        sa.Column("code", ID, nullable=False),
        sa.Column("redeemed_ms", MS, nullable=False),
        sa.Column("store_id", ID, nullable=True),
        sa.Column("sale_id", KEY, nullable=True),
        sa.PrimaryKeyConstraint("code", name="pk_coupon_redemptions"),
    )
    op.create_table(
        "stored_value_accounts",
        sa.Column("member_id", ID, nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("member_id", name="pk_stored_value_accounts"),
        sa.CheckConstraint("balance >= 0",
                           name="ck_stored_value_accounts_balance_nonneg"),
    )
    op.create_table(
        "stored_value_ledger",
        sa.Column("id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("ref", KEY, nullable=False),
        sa.Column("created_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stored_value_ledger"),
        sa.UniqueConstraint("member_id", "ref", name="uq_stored_value_ledger_member_ref"),
    )
    op.create_table(
        "commissions",
        sa.Column("id", ID, nullable=False),
        sa.Column("sale_id", ID, nullable=False),
        sa.Column("beneficiary_id", ID, nullable=False),
        sa.Column("buyer_id", ID, nullable=True),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_ms", MS, nullable=False),
        sa.Column("settle_after_ms", MS, nullable=False),
        sa.Column("closed_ms", MS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_commissions"),
        sa.UniqueConstraint("sale_id", "beneficiary_id", "level",
                            name="uq_commissions_sale_beneficiary"),
    )
    op.create_index("ix_commissions_status", "commissions", ["status", "settle_after_ms"])
    op.create_table(
        "promotions",
        sa.Column("promotion_id", ID, nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("stores", sa.JSON(), nullable=False),
        sa.Column("regions", sa.JSON(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("created_ms", MS, nullable=False),
        sa.Column("updated_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("promotion_id", name="pk_promotions"),
    )
    op.create_table(
        "promotion_publications",
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("published_ms", MS, nullable=False),
        sa.Column("entries", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_promotion_publications"),
    )
    op.create_table(
        "sale_price_mismatches",
        sa.Column("event_id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("snapshot_version", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("expected", sa.JSON(), nullable=True),
        sa.Column("reported", sa.JSON(), nullable=True),
        sa.Column("detected_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_sale_price_mismatches"),
    )
    op.create_index("ix_sale_price_mismatches_store", "sale_price_mismatches",
                    ["store_id", "detected_ms"])


def downgrade() -> None:
    op.drop_index("ix_sale_price_mismatches_store", table_name="sale_price_mismatches")
    op.drop_table("sale_price_mismatches")
    op.drop_table("promotion_publications")
    op.drop_table("promotions")
    op.drop_index("ix_commissions_status", table_name="commissions")
    op.drop_table("commissions")
    op.drop_table("stored_value_ledger")
    op.drop_table("stored_value_accounts")
    op.drop_table("coupon_redemptions")
    op.drop_index("ix_coupons_member", table_name="coupons")
    op.drop_table("coupons")
    op.drop_table("campaigns")
    op.drop_table("tiers")
    op.drop_index("ix_points_ledger_lot", table_name="points_ledger")
    op.drop_index("ix_points_ledger_member", table_name="points_ledger")
    op.drop_table("points_ledger")
    op.drop_index("ix_points_ops_member_id", table_name="points_ops")
    op.drop_table("points_ops")
    op.drop_table("members")
    op.drop_index("ix_store_regions_region", table_name="store_regions")
    op.drop_table("store_regions")
