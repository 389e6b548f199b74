"""Models of online orders (store locations, stock, orders and their status history)
and of offline coupon code ranges pre-allocated to stores.

Imported by ``cloud.db.models`` so that ``Base.metadata`` holds every table. Times are
UTC epoch ms; coordinates are WGS84 degrees (a float is ample: 1e-7 degree is 1 cm).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.models import Base, Id

Key = String(128)


class StoreLocation(Base):
    __tablename__ = "store_locations"

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    accepts_orders: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_ms: Mapped[int]


class StockLevel(Base):
    """Units a store can sell online; orders reserve (decrement) and cancels restore."""

    __tablename__ = "stock"
    __table_args__ = (CheckConstraint("qty >= 0", name="qty_nonneg"),)

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    qty: Mapped[int] = mapped_column(Integer)
    updated_ms: Mapped[int]
    # When ``qty`` was last set by a count (``PUT .../stock``): a store event from before
    # it is already in the count and moves nothing (decision 0067). None: never counted.
    counted_ms: Mapped[int | None]


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_store_status", "store_id", "status"),
        Index("ix_orders_created", "created_ms", "order_id"),
        # One provider payment pays one order: a reused reference is a replay.
        Index("uq_orders_payment_ref", "payment_ref", unique=True),
        Index("ix_orders_payment_created", "payment", "created_ms"),  # unpaid expiry
    )

    order_id: Mapped[str] = mapped_column(Id, primary_key=True)
    # The client's idempotency key: a retried POST returns the same order.
    idempotency_key: Mapped[str] = mapped_column(Key, unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    store_id: Mapped[str] = mapped_column(Id)
    fulfilment: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    customer: Mapped[dict[str, Any]] = mapped_column(JSON)
    member_id: Mapped[str | None] = mapped_column(Id)
    note: Mapped[str] = mapped_column(String(300), default="")
    distance_m: Mapped[int]
    created_ms: Mapped[int]
    updated_ms: Mapped[int]
    # pending | published | failed: whether the broker took the dispatch.
    dispatch: Mapped[str] = mapped_column(String(16), default="pending")
    # Priced at placement by the engine's online channel (decision 0067): the totals in
    # minor units of ``currency``, the lines and promotions applied in ``priced``. None
    # on orders placed before migration 0024.
    currency: Mapped[str | None] = mapped_column(String(3))
    total: Mapped[int | None]
    priced: Mapped[dict[str, Any] | None]
    # due (waits for its payment notice, not dispatched) | paid | at_store (collected
    # at pickup or delivery: the cloud takes no online payments).
    payment: Mapped[str] = mapped_column(String(16), default="at_store",
                                         server_default="at_store")
    paid_ms: Mapped[int | None]
    payment_ref: Mapped[str | None] = mapped_column(String(128))


class OrderStatusEvent(Base):
    """Every ``order_status`` event received, keyed by store and event id (applied once)."""

    __tablename__ = "order_status_events"
    __table_args__ = (Index("ix_order_status_events_order", "order_id", "ts"),)

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    event_id: Mapped[str] = mapped_column(Id, primary_key=True)
    order_id: Mapped[str] = mapped_column(Id)
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    # applied | noop (already in that state) | illegal | wrong_store | unknown_order
    outcome: Mapped[str] = mapped_column(String(16))
    ts: Mapped[int]
    received_ms: Mapped[int]


class CouponRange(Base):
    """Single-use coupon codes ``{prefix}{n:06d}`` for n in [first, first + count),
    pre-allocated to one store so that it can redeem them offline."""

    __tablename__ = "coupon_ranges"
    __table_args__ = (
        UniqueConstraint("prefix", name="uq_coupon_ranges_prefix"),
        Index("ix_coupon_ranges_store", "store_id"),
    )

    range_id: Mapped[str] = mapped_column(Id, primary_key=True)
    store_id: Mapped[str] = mapped_column(Id)
    # The engine coupon rule's code the range's coupons answer to at the till.
    engine_code: Mapped[str] = mapped_column(Id)
    prefix: Mapped[str] = mapped_column(String(32))
    first: Mapped[int]
    count: Mapped[int]
    expires_ms: Mapped[int]
    allocated_ms: Mapped[int]


class OfflineRedemption(Base):
    """The first redemption of a range code wins (primary key); later ones are flagged."""

    __tablename__ = "offline_redemptions"
    __table_args__ = (
        UniqueConstraint("store_id", "event_id", name="uq_offline_redemptions_store_event"),
    )

    code: Mapped[str] = mapped_column(Id, primary_key=True)
    range_id: Mapped[str | None] = mapped_column(Id)
    store_id: Mapped[str] = mapped_column(Id)
    event_id: Mapped[str] = mapped_column(Id)
    sale_id: Mapped[str | None] = mapped_column(Id)
    redeemed_ms: Mapped[int]


class CouponFlag(Base):
    """A redemption the cloud could not accept: double use, or a code outside the
    store's ranges. Keyed by store and event id, so a redelivered event flags once."""

    __tablename__ = "coupon_flags"
    __table_args__ = (Index("ix_coupon_flags_code", "code"),)

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    event_id: Mapped[str] = mapped_column(Id, primary_key=True)
    code: Mapped[str] = mapped_column(Id)
    reason: Mapped[str] = mapped_column(String(24))  # double_use | not_allocated | expired
    first_event_id: Mapped[str | None] = mapped_column(Id)
    detected_ms: Mapped[int]


class StockMove(Base):
    """A store event that moved stock (sale, refund, vend), applied once: keyed by store
    and event id like the events themselves (decision 0067)."""

    __tablename__ = "stock_moves"

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    event_id: Mapped[str] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    units: Mapped[int]  # signed: units taken (-) or put back (+) over all skus
    applied_ms: Mapped[int]
