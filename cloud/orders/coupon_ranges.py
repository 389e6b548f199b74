"""Single-use coupon codes pre-allocated to a store, so that it can redeem them offline.

A range is ``{prefix}{n:06d}`` for ``first <= n < first + count``; its coupons answer to
one engine coupon rule (``engine_code``, e.g. a campaign's). The store box downloads its
ranges while online (``GET /api/v1/stores/{id}/coupon-ranges``), redeems codes from them
without the cloud, remembers which it used, and reports each as a ``coupon_redeemed``
event with ``source = "range"``. ``RangeRedemptionHook`` reconciles: the first
redemption of a code wins (primary key on the code); a second one (another till,
another store, a copied coupon) and a code outside the store's ranges are flagged in
``coupon_flags`` and counted, never silently accepted or dropped.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.models_orders import CouponFlag, CouponRange, OfflineRedemption
from cloud.db.writes import dialect_insert
from cloud.orders.errors import InvalidOrder
from cloud.orders.metrics import OrderMetrics
from protocols.ids import uuid7
from protocols.messages import Event

logger = logging.getLogger(__name__)

# Letters and digits without look-alikes (0/O, 1/I/L): codes are typed at the till.
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
MAX_RANGE = 100_000  # six digits of serial
DAY_MS = 86_400_000


def code_of(prefix: str, n: int) -> str:
    return f"{prefix}{n:06d}"


def allocate_range(session: Session, store_id: str, *, engine_code: str, count: int,
                   ttl_days: int, now_ms: int) -> CouponRange:
    if not 1 <= count <= MAX_RANGE:
        raise InvalidOrder(f"count must be 1..{MAX_RANGE}")
    if not 1 <= ttl_days <= 366:
        raise InvalidOrder("ttl_days must be 1..366")
    # 8 random characters: 31^8 ~ 8.5e11 prefixes, a collision (unique constraint) is
    # practically impossible and would only fail this one request.
    prefix = "R" + "".join(secrets.choice(_ALPHABET) for _ in range(8)) + "-"
    row = CouponRange(range_id=uuid7(now_ms), store_id=store_id, engine_code=engine_code,
                      prefix=prefix, first=1, count=count,
                      expires_ms=now_ms + ttl_days * DAY_MS, allocated_ms=now_ms)
    session.add(row)
    session.flush()
    return row


def ranges_for_store(session: Session, store_id: str, *, now_ms: int) -> list[CouponRange]:
    return list(session.scalars(
        select(CouponRange).where(CouponRange.store_id == store_id,
                                  CouponRange.expires_ms > now_ms)
        .order_by(CouponRange.allocated_ms, CouponRange.range_id)))


def range_view(row: CouponRange) -> dict[str, Any]:
    return {"range_id": row.range_id, "store_id": row.store_id,
            "engine_code": row.engine_code, "prefix": row.prefix, "first": row.first,
            "count": row.count, "expires_ms": row.expires_ms,
            "allocated_ms": row.allocated_ms}


class RangeRedemption(BaseModel):
    """``Event.data`` of a ``coupon_redeemed`` event from a pre-allocated range."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    source: str
    code: str
    sale_id: str | None = None
    offline: bool = False


def reconcile(session: Session, event: Event, data: RangeRedemption, *,
              now_ms: int) -> str:
    """Record one range redemption; returns accepted | duplicate | a flag reason."""
    prefix, _, serial = data.code.rpartition("-")
    rng = session.scalar(select(CouponRange).where(CouponRange.prefix == prefix + "-"))
    n = int(serial) if serial.isdigit() else -1
    reason: str | None = None
    if rng is None or rng.store_id != event.store_id or not rng.first <= n < rng.first + rng.count:
        reason = "not_allocated"
    elif event.ts >= rng.expires_ms:
        reason = "expired"
    first_event: str | None = None
    if reason is None:
        inserted = session.execute(
            dialect_insert(session, OfflineRedemption).values(
                code=data.code, range_id=rng.range_id if rng else None,
                store_id=event.store_id, event_id=event.id, sale_id=data.sale_id,
                redeemed_ms=event.ts)
            .on_conflict_do_nothing().returning(OfflineRedemption.code)).first()
        if inserted is not None:
            return "accepted"
        first = session.get(OfflineRedemption, data.code)
        if first is not None and (first.store_id, first.event_id) == (event.store_id,
                                                                     event.id):
            return "duplicate"
        reason, first_event = "double_use", first.event_id if first else None
    flagged = session.execute(
        dialect_insert(session, CouponFlag).values(
            event_id=event.id, code=data.code, store_id=event.store_id, reason=reason,
            first_event_id=first_event, detected_ms=now_ms)
        .on_conflict_do_nothing(index_elements=["store_id", "event_id"])
        .returning(CouponFlag.event_id)
    ).first()
    return reason if flagged is not None else "duplicate"


class RangeRedemptionHook:
    """Callable for ``PostCommitHooks.register("coupon-ranges", {"coupon_redeemed"}, hook)``."""

    def __init__(self, *, metrics: OrderMetrics) -> None:
        self.metrics = metrics

    def __call__(self, session: Session, event: Event, now_ms: int) -> None:
        if event.data.get("source") != "range":
            return  # a member coupon redeemed online: loyalty's business
        try:
            data = RangeRedemption.model_validate(event.data)
        except ValidationError as err:
            self.metrics.coupon_flags.labels(reason="bad_payload").inc()
            logger.warning("store %s: coupon_redeemed %s unusable: %s", event.store_id,
                           event.id, err.errors()[0])
            return
        outcome = reconcile(session, event, data, now_ms=now_ms)
        if outcome == "accepted":
            self.metrics.coupon_redemptions.inc()
        elif outcome != "duplicate":
            self.metrics.coupon_flags.labels(reason=outcome).inc()
            logger.warning("store %s: coupon %s flagged: %s (event %s)", event.store_id,
                           data.code, outcome, event.id)
