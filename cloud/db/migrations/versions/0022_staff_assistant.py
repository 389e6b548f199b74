"""staff assistant: assistants, member recruiting, staff coupons (decision 0065)

Also ``store_sales``, one row per sale event, filled here from the sale events already
stored and afterwards by the staff ingest hook.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_BATCH = 5000  # sale events read per round of the backfill: bounded memory


def upgrade() -> None:
    op.create_table(
        "staff_assistants",
        sa.Column("assistant_id", sa.String(64), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("assistant_id", name="pk_staff_assistants"),
    )
    op.create_index("ix_staff_assistants_store", "staff_assistants",
                    ["store_id", "assistant_id"])
    op.create_table(
        "member_recruits",
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("assistant_id", sa.String(64), nullable=False),
        sa.Column("join_id", sa.String(64), nullable=False),
        sa.Column("joined_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name="pk_member_recruits"),
        sa.UniqueConstraint("join_id", name="uq_member_recruits_join_id"),
    )
    op.create_index("ix_member_recruits_store", "member_recruits", ["store_id", "joined_ms"])
    op.create_index("ix_member_recruits_assistant", "member_recruits",
                    ["assistant_id", "joined_ms"])
    op.create_table(
        "member_birthdays",
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("month_day", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name="pk_member_birthdays"),
    )
    op.create_table(
        "store_sales",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=True),
        sa.Column("paid", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "event_id", name="pk_store_sales"),
    )
    op.create_index("ix_store_sales_store", "store_sales", ["store_id", "ts"])
    op.create_index("ix_store_sales_member", "store_sales", ["member_id", "ts"])
    op.create_table(
        "staff_coupons",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("lapse_ms", sa.BigInteger(), nullable=False),
        sa.Column("issued_by", sa.String(128), nullable=False),
        sa.Column("issued_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_staff_coupons"),
        sa.UniqueConstraint("store_id", "member_id", "lapse_ms",
                            name="uq_staff_coupons_store_member_lapse"),
    )
    op.create_index("ix_staff_coupons_store", "staff_coupons", ["store_id", "issued_ms"])
    _backfill_sales()


def _sale_row(store_id: str, event_id: str, ts: int, data: Any) -> dict[str, Any]:
    """The index row of one stored sale event (the hook's rule, without its imports:
    a migration must not change when the application code does)."""
    data = data if isinstance(data, dict) else {}
    totals = data.get("totals") if isinstance(data.get("totals"), dict) else {}
    paid = totals.get("paid") if isinstance(totals, dict) else None
    member = data.get("member_id")
    return {"store_id": store_id, "event_id": event_id, "ts": ts,
            "paid": paid if type(paid) is int and 0 <= paid < 2**63 else 0,
            "member_id": member if isinstance(member, str) and 0 < len(member) <= 64
            else None}


def _backfill_sales() -> None:
    events = sa.table("events", sa.column("store_id", sa.String), sa.column("id", sa.String),
                      sa.column("kind", sa.String), sa.column("ts", sa.BigInteger),
                      sa.column("data", sa.JSON))
    sales = sa.table("store_sales", sa.column("store_id", sa.String),
                     sa.column("event_id", sa.String), sa.column("member_id", sa.String),
                     sa.column("paid", sa.BigInteger), sa.column("ts", sa.BigInteger))
    conn = op.get_bind()
    after: tuple[str, str] = ("", "")
    while True:
        rows = conn.execute(
            sa.select(events.c.store_id, events.c.id, events.c.ts, events.c.data)
            .where(events.c.kind == "sale",
                   sa.tuple_(events.c.store_id, events.c.id) > sa.tuple_(*after))
            .order_by(events.c.store_id, events.c.id).limit(_BATCH)).all()
        if not rows:
            return
        conn.execute(sales.insert(), [_sale_row(*row) for row in rows])
        after = (rows[-1][0], rows[-1][1])


def downgrade() -> None:
    op.drop_index("ix_staff_coupons_store", table_name="staff_coupons")
    op.drop_table("staff_coupons")
    op.drop_index("ix_store_sales_member", table_name="store_sales")
    op.drop_index("ix_store_sales_store", table_name="store_sales")
    op.drop_table("store_sales")
    op.drop_table("member_birthdays")
    op.drop_index("ix_member_recruits_assistant", table_name="member_recruits")
    op.drop_index("ix_member_recruits_store", table_name="member_recruits")
    op.drop_table("member_recruits")
    op.drop_index("ix_staff_assistants_store", table_name="staff_assistants")
    op.drop_table("staff_assistants")
