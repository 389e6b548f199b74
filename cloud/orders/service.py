"""Online orders: place (route + reserve, idempotent), look up, and the admin setters
for store locations and stock. Functions take the caller's session and never commit.

    order, created = place_order(session, request, key="client-key-1", now_ms=now)
    msg = dispatch_message(order, now_ms=now)       # -> protocols.orders.OrderDispatch
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.models_orders import Order, StockLevel, StoreLocation
from cloud.orders import routing
from cloud.orders.errors import IdempotencyConflict, InvalidOrder, NoStoreAvailable, UnknownOrder
from cloud.orders.pricing import OrderPricer
from protocols.ids import uuid7
from protocols.orders import Customer, Fulfilment, OrderDispatch, OrderLine

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    fulfilment: Fulfilment
    lines: tuple[OrderLine, ...]
    customer: Customer
    lat: float
    lon: float
    member_id: str | None = None
    note: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    coupons: tuple[str, ...] = ()  # codes the shopper presents (decision 0067)

    def need(self) -> dict[str, int]:
        """Units per sku (the same sku on two lines is one need)."""
        out: dict[str, int] = {}
        for line in self.lines:
            out[line.sku] = out.get(line.sku, 0) + line.qty
        return out

    def digest(self) -> str:
        """What the idempotency key is bound to: a retry must send the same order."""
        doc: dict[str, Any] = {
            "fulfilment": self.fulfilment,
            "lines": sorted((ln.sku, ln.qty) for ln in self.lines),
            "customer": self.customer.model_dump(mode="json"),
            "member_id": self.member_id,
            "lat": self.lat,
            "lon": self.lon,
            "note": self.note,
        }
        if self.coupons:  # only then: keys of orders placed before keep their digest
            doc["coupons"] = list(self.coupons)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def place_order(session: Session, request: OrderRequest, *, key: str, now_ms: int,
                pricer: OrderPricer | None = None,
                payment: str = "at_store") -> tuple[Order, bool]:
    """Route, reserve and (``pricer``) price; returns (order, created). A retried key
    returns its order, price included. ``payment``: ``due`` or ``at_store``."""
    digest = request.digest()
    existing = session.scalar(select(Order).where(Order.idempotency_key == key))
    if existing is not None:
        if existing.request_hash != digest:
            raise IdempotencyConflict(key)
        return existing, False
    if request.fulfilment == "delivery" and not request.customer.address:
        raise InvalidOrder("a delivery order needs customer.address")
    need = request.need()
    found = routing.candidates(session, need, lat=request.lat, lon=request.lon)
    for cand in found:
        if cand.in_stock and routing.reserve(session, cand.store_id, need, now_ms=now_ms):
            order = Order(
                order_id=uuid7(now_ms), idempotency_key=key, request_hash=digest,
                store_id=cand.store_id, fulfilment=request.fulfilment, status="placed",
                lines=[ln.model_dump(mode="json") for ln in request.lines],
                customer=request.customer.model_dump(mode="json"),
                member_id=request.member_id, note=request.note,
                distance_m=round(cand.distance_m), created_ms=now_ms, updated_ms=now_ms,
                dispatch="pending",
            )
            try:
                with session.begin_nested():
                    if pricer is not None:  # coupons redeemed inside this savepoint
                        pricer.price_order(session, order, lines=request.lines,
                                           coupons=request.coupons, now_ms=now_ms,
                                           payment=payment)
                    session.add(order)
            except sa_exc.IntegrityError:
                # The same key placed by a concurrent retry: theirs won, return it.
                again = session.scalar(select(Order).where(Order.idempotency_key == key))
                if again is None or again.request_hash != digest:
                    raise IdempotencyConflict(key) from None
                return again, False
            logger.info("order %s -> store %s (%d m)", order.order_id, cand.store_id,
                        order.distance_m)
            return order, True
    skus = ", ".join(f"{sku} x{qty}" for sku, qty in sorted(need.items()))
    raise NoStoreAvailable(
        f"no store accepting orders has all of: {skus}" if found
        else "no store accepts online orders (no store locations set)",
        candidates=len(found))


def dispatch_message(order: Order, *, now_ms: int) -> OrderDispatch:
    return OrderDispatch(
        order_id=order.order_id, store_id=order.store_id,
        fulfilment=order.fulfilment,  # type: ignore[arg-type]
        lines=[OrderLine.model_validate(ln) for ln in order.lines],
        customer=Customer.model_validate(order.customer), member_id=order.member_id,
        note=order.note, created_ms=order.created_ms, ts=now_ms,
        currency=order.currency, total=order.total,
        payment="paid" if order.payment == "paid" else "at_store",
    )


def get_order(session: Session, order_id: str) -> Order:
    order = session.get(Order, order_id)
    if order is None:
        raise UnknownOrder("order", order_id)
    return order


def list_orders(session: Session, *, store_id: str | None = None, status: str | None = None,
                limit: int = 100, stores: frozenset[str] | None = None) -> list[Order]:
    """Newest first; ``store_id`` / ``stores`` narrow it (both: their intersection)."""
    stmt = select(Order).order_by(Order.created_ms.desc(), Order.order_id.desc()).limit(limit)
    if store_id is not None:
        stmt = stmt.where(Order.store_id == store_id)
    if stores is not None:
        stmt = stmt.where(Order.store_id.in_(sorted(stores)))
    if status is not None:
        stmt = stmt.where(Order.status == status)
    return list(session.scalars(stmt))


def set_dispatch(session: Session, order_id: str, result: str) -> None:
    order = session.get(Order, order_id)
    if order is not None and order.dispatch != "published":
        order.dispatch = result


def set_location(session: Session, store_id: str, *, lat: float, lon: float,
                 accepts_orders: bool, now_ms: int) -> StoreLocation:
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise InvalidOrder("lat must be in [-90, 90] and lon in [-180, 180]")
    row = session.get(StoreLocation, store_id)
    if row is None:
        row = StoreLocation(store_id=store_id, lat=lat, lon=lon, accepts_orders=accepts_orders,
                            updated_ms=now_ms)
        session.add(row)
    else:
        row.lat, row.lon, row.accepts_orders, row.updated_ms = lat, lon, accepts_orders, now_ms
    session.flush()
    return row


def set_stock(session: Session, store_id: str, levels: Mapping[str, int], *,
              now_ms: int) -> dict[str, int]:
    """Set absolute stock levels (a count from the store's inventory system)."""
    for sku, qty in levels.items():
        if qty < 0:
            raise InvalidOrder(f"stock of {sku!r} cannot be negative")
        row = session.get(StockLevel, (store_id, sku))
        if row is None:
            session.add(StockLevel(store_id=store_id, sku=sku, qty=qty, updated_ms=now_ms,
                                   counted_ms=now_ms))
        else:
            row.qty, row.updated_ms, row.counted_ms = qty, now_ms, now_ms
    session.flush()
    return get_stock(session, store_id)


def get_stock(session: Session, store_id: str) -> dict[str, int]:
    rows = session.scalars(select(StockLevel).where(StockLevel.store_id == store_id)
                           .order_by(StockLevel.sku))
    return {r.sku: r.qty for r in rows}
