"""Online orders, the store locations and stock they are routed by, and the coupon code
ranges stores redeem offline.

=====================================  ============  =====================================
``PUT  /stores/{id}/location``         hq-admin      lat/lon, accepts_orders
``PUT  /stores/{id}/stock``            hq-admin,     absolute stock levels {sku: qty}
                                       manager
``GET  /stores/{id}/stock``            readers
``POST /orders``                       hq-admin,     place (Idempotency-Key header or
                                       manager       ``idempotency_key``); 409 no store
``GET  /orders``, ``/orders/{id}``     readers       with the status history
``POST /orders/{id}/dispatch``         hq-admin,     publish to the store again (paid or
                                       field-tech    ``at_store`` orders only)
``POST /order-payments/notify``        no token:     the payment gateway's signed notice
                                       its HMAC      (decision 0067); dispatches on payment
``POST /stores/{id}/coupon-ranges``    hq-admin      allocate a range to a store
``GET  /stores/{id}/coupon-ranges``    readers,      what the store box downloads
                                       device
``GET  /coupon-flags``                 readers       offline double use etc.
=====================================  ============  =====================================
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.api.deps import (
    AdminRole,
    CommandRole,
    PrincipalDep,
    ReadRole,
    RoleDep,
    SessionDep,
    StateDep,
    scoped_store_filter,
)
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.routes.retail_common import RetailDep
from cloud.api.schemas import Text
from cloud.db.models_orders import CouponFlag, Order, OrderStatusEvent
from cloud.orders import coupon_ranges, service
from cloud.orders.dispatch import dispatch
from cloud.orders.errors import (
    IdempotencyConflict,
    InvalidOrder,
    NoStoreAvailable,
    OrderError,
    PaymentRefused,
    UnknownOrder,
    Unpriceable,
)
from cloud.orders.metrics import OrderMetrics
from cloud.orders.payments import accept_notice, payment_payload
from cloud.orders.pricing import OrderPricer
from cloud.settings import Role
from protocols.ids import Id
from protocols.orders import Customer, Fulfilment, OrderLine
from protocols.payments import SIGNATURE_HEADER

logger = logging.getLogger(__name__)

router = APIRouter(tags=["orders"], route_class=JsonRoute)
# Routes the payment gateway calls: authenticated by the notice's HMAC, not a token.
public_router = APIRouter(tags=["orders"])

MAX_NOTICE = 4096  # a notice is ~300 bytes; anything far larger is not one

StoreId = Annotated[Id, Path(description="store id")]
OrderId = Annotated[Id, Path(description="order id")]


@dataclass
class OrdersState:
    """Hung on ``app.state.orders`` by ``cloud.main.create_app``."""

    metrics: OrderMetrics


def get_orders_state(request: Request) -> OrdersState:
    state: OrdersState = request.app.state.orders
    return state


OrdersDep = Annotated[OrdersState, Depends(get_orders_state)]


def _roles(allowed: frozenset[Role], what: str) -> Any:
    def check(role: RoleDep) -> Role:
        if role not in allowed:
            raise ApiProblem(403, f"role {role.value!r} may not {what}", reason="forbidden")
        return role

    return Depends(check)


OrderRole = Annotated[Role, _roles(frozenset({Role.HQ_ADMIN, Role.STORE_MANAGER}),
                                   "place orders or set stock")]
RangeReadRole = Annotated[Role, _roles(frozenset({Role.HQ_ADMIN, Role.FIELD_TECH,
                                                  Role.STORE_MANAGER, Role.DEVICE}),
                                       "read coupon ranges")]


# ---- schemas ------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocationUpdate(_Body):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accepts_orders: bool = True


class StockUpdate(_Body):
    levels: dict[Id, Annotated[int, Field(ge=0, le=10_000_000)]] = Field(max_length=10_000)


class OrderCreate(_Body):
    idempotency_key: Text | None = Field(default=None, min_length=8, max_length=128)
    fulfilment: Fulfilment
    lines: list[OrderLine] = Field(min_length=1, max_length=200)
    customer: Customer
    member_id: Id | None = None
    coupons: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=10,
        description="coupon codes: a member's coupons or public codes (decision 0067)")
    note: Text = Field(default="", max_length=300)
    lat: float = Field(ge=-90, le=90, description="delivery address or the shopper's position")
    lon: float = Field(ge=-180, le=180)


class StatusChange(BaseModel):
    event_id: str
    from_status: str | None
    to_status: str
    outcome: str
    ts: int


class OrderPublic(BaseModel):
    order_id: str
    store_id: str
    fulfilment: str
    status: str
    lines: list[dict[str, Any]]
    customer: dict[str, Any]
    member_id: str | None
    note: str
    distance_m: int
    created_ms: int
    updated_ms: int
    dispatch: str
    price: dict[str, Any] | None = Field(
        default=None, description="fixed at placement, minor units (decision 0067)")
    payment: dict[str, Any] = Field(
        default_factory=dict, description="state (due, paid, at_store), amount, currency; "
                                          "payload: what a due order's payment names")
    history: list[StatusChange] = Field(default_factory=list)


class RangeCreate(_Body):
    engine_code: Id
    count: int = Field(ge=1, le=coupon_ranges.MAX_RANGE)
    ttl_days: int = Field(default=30, ge=1, le=366)


def _public(order: Order, history: list[OrderStatusEvent] | None = None) -> OrderPublic:
    return OrderPublic(
        order_id=order.order_id, store_id=order.store_id, fulfilment=order.fulfilment,
        status=order.status, lines=order.lines, customer=order.customer,
        member_id=order.member_id, note=order.note, distance_m=order.distance_m,
        created_ms=order.created_ms, updated_ms=order.updated_ms, dispatch=order.dispatch,
        price=order.priced,
        payment={"state": order.payment, "amount": order.total, "currency": order.currency,
                 "payload": payment_payload(order) if order.payment == "due" else None,
                 "paid_ms": order.paid_ms},
        history=[StatusChange(event_id=h.event_id, from_status=h.from_status,
                              to_status=h.to_status, outcome=h.outcome, ts=h.ts)
                 for h in history or ()],
    )


def _problem(err: OrderError, metrics: OrderMetrics) -> ApiProblem:
    if isinstance(err, NoStoreAvailable):
        metrics.rejected.labels(reason="no_store").inc()
        return ApiProblem(409, err.detail, reason="no_store_available")
    if isinstance(err, IdempotencyConflict):
        metrics.rejected.labels(reason="idempotency_conflict").inc()
        return ApiProblem(409, str(err), reason="idempotency_conflict")
    if isinstance(err, UnknownOrder):
        return ApiProblem(404, str(err))
    if isinstance(err, Unpriceable):
        metrics.rejected.labels(reason=err.reason).inc()
        logger.warning("order refused, not priceable (%s): %s", err.reason, err.detail)
        return ApiProblem(422, err.detail, reason=err.reason)
    if isinstance(err, InvalidOrder):
        metrics.rejected.labels(reason="invalid").inc()
        return ApiProblem(422, err.detail, reason="invalid")
    return ApiProblem(400, str(err))


# ---- stores: location and stock ---------------------------------------------------------


@router.put("/stores/{store_id}/location", summary="Set where a store is (order routing)")
def put_location(store_id: StoreId, body: LocationUpdate, app: StateDep,
                 _: AdminRole) -> dict[str, Any]:
    with app.writer.begin() as session:
        row = service.set_location(session, store_id, lat=body.lat, lon=body.lon,
                                   accepts_orders=body.accepts_orders,
                                   now_ms=app.clock.now_ms())
        return {"store_id": row.store_id, "lat": row.lat, "lon": row.lon,
                "accepts_orders": row.accepts_orders}


@router.put("/stores/{store_id}/stock", summary="Set a store's stock levels (absolute)")
def put_stock(store_id: StoreId, body: StockUpdate, app: StateDep, orders: OrdersDep,
              _: OrderRole) -> dict[str, Any]:
    try:
        with app.writer.begin() as session:
            levels = service.set_stock(session, store_id, body.levels, now_ms=app.clock.now_ms())
    except OrderError as err:
        raise _problem(err, orders.metrics) from err
    return {"store_id": store_id, "levels": levels}


@router.get("/stores/{store_id}/stock", summary="A store's stock levels")
def get_stock(store_id: StoreId, session: SessionDep, _: ReadRole) -> dict[str, Any]:
    return {"store_id": store_id, "levels": service.get_stock(session, store_id)}


# ---- orders ---------------------------------------------------------------------------------


def _place(sessions: sessionmaker[Session], request: service.OrderRequest, key: str,
           now_ms: int, pricer: OrderPricer, payment: str) -> tuple[Order, bool]:
    with sessions.begin() as session:
        return service.place_order(session, request, key=key, now_ms=now_ms, pricer=pricer,
                                   payment=payment)


def _set_dispatch(sessions: sessionmaker[Session], order_id: str, result: str) -> None:
    with sessions.begin() as session:
        service.set_dispatch(session, order_id, result)


async def _publish(app: Any, orders: OrdersState, order: Order) -> str:
    ok = await dispatch(app.publisher, order, now_ms=app.clock.now_ms(),
                        metrics=orders.metrics)
    result = "published" if ok else "failed"
    await asyncio.to_thread(_set_dispatch, app.writer, order.order_id, result)
    return result


@router.post(
    "/orders", status_code=201,
    summary="Place an online order; routed to the nearest store with every line in stock",
    responses={200: {"description": "a retry with the same idempotency key"},
               409: {"description": "no store can fulfil it, or the key was reused"}},
)
async def create_order(
    body: OrderCreate, app: StateDep, orders: OrdersDep, retail: RetailDep, _: OrderRole,
    response: Response,
    idempotency_key: Annotated[Text | None, Header(min_length=8, max_length=128)] = None,
) -> OrderPublic:
    key = idempotency_key or body.idempotency_key
    if key is None:
        raise ApiProblem(422, "an Idempotency-Key header (or idempotency_key) is required",
                         reason="invalid")
    request = service.OrderRequest(
        fulfilment=body.fulfilment, lines=tuple(body.lines), customer=body.customer,
        lat=body.lat, lon=body.lon, member_id=body.member_id, note=body.note,
        coupons=tuple(body.coupons))
    pricer = OrderPricer(repricer=retail.repricer, program=retail.program)
    # With online payments on, an order waits for its notice before it is dispatched.
    payment = "due" if app.settings.order_payment_secret is not None else "at_store"
    try:
        order, created = await asyncio.to_thread(_place, app.writer, request, key,
                                                 app.clock.now_ms(), pricer, payment)
    except OrderError as err:
        raise _problem(err, orders.metrics) from err
    if created:
        orders.metrics.placed.labels(fulfilment=order.fulfilment).inc()
    else:
        response.status_code = 200
    if order.payment != "due" and (created or order.dispatch != "published"):
        order.dispatch = await _publish(app, orders, order)
    response.headers["Location"] = f"/api/v1/orders/{order.order_id}"
    return _public(order)


@router.get("/orders/{order_id}", summary="An order with its status history",
            responses={404: {"description": "unknown order"}})
def get_order(order_id: OrderId, session: SessionDep, _: ReadRole,
              who: PrincipalDep) -> OrderPublic:
    order = session.get(Order, order_id)
    if order is None:
        raise ApiProblem(404, f"no order {order_id!r}")
    who.check_store(session, order.store_id)
    history = list(session.scalars(
        select(OrderStatusEvent).where(OrderStatusEvent.order_id == order_id)
        .order_by(OrderStatusEvent.received_ms, OrderStatusEvent.ts,
                  OrderStatusEvent.event_id)))
    return _public(order, history)


@router.get("/orders", summary="Recent orders, newest first")
def list_orders(
    session: SessionDep, _: ReadRole, who: PrincipalDep,
    store_id: Annotated[Id | None, Query()] = None,
    status: Annotated[Text | None, Query(max_length=24)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OrderPublic]:
    stores = scoped_store_filter(session, who, store_id)
    return [_public(o) for o in service.list_orders(session, stores=stores, status=status,
                                                    limit=limit)]


@router.post("/orders/{order_id}/dispatch", summary="Publish an order to its store again",
             responses={404: {"description": "unknown order"},
                        503: {"description": "the broker did not take it"}})
async def redispatch(order_id: OrderId, app: StateDep, orders: OrdersDep,
                     _: CommandRole, who: PrincipalDep) -> OrderPublic:
    def load() -> Order | None:
        with app.reader() as session:
            order = session.get(Order, order_id)
            if order is not None:
                who.check_store(session, order.store_id)
            return order

    order = await asyncio.to_thread(load)
    if order is None:
        raise ApiProblem(404, f"no order {order_id!r}")
    if order.payment == "due":
        orders.metrics.dispatch.labels(result="unpaid").inc()
        raise ApiProblem(409, f"order {order_id} is not paid yet: it is dispatched on "
                              "payment", reason="unpaid")
    order.dispatch = await _publish(app, orders, order)
    if order.dispatch != "published":
        raise ApiProblem(503, f"order {order_id} not published", reason="publish_failed")
    return _public(order)


# ---- offline coupon ranges ---------------------------------------------------------------------


@router.post("/stores/{store_id}/coupon-ranges", status_code=201,
             summary="Allocate single-use coupon codes a store may redeem offline")
def create_range(store_id: StoreId, body: RangeCreate, app: StateDep, orders: OrdersDep,
                 _: AdminRole) -> dict[str, Any]:
    try:
        with app.writer.begin() as session:
            row = coupon_ranges.allocate_range(
                session, store_id, engine_code=body.engine_code, count=body.count,
                ttl_days=body.ttl_days, now_ms=app.clock.now_ms())
            return coupon_ranges.range_view(row)
    except OrderError as err:
        raise _problem(err, orders.metrics) from err


@router.get("/stores/{store_id}/coupon-ranges",
            summary="The unexpired coupon ranges of a store (the store box caches them)")
def list_ranges(store_id: StoreId, session: SessionDep, app: StateDep,
                _: RangeReadRole) -> dict[str, Any]:
    rows = coupon_ranges.ranges_for_store(session, store_id, now_ms=app.clock.now_ms())
    return {"store_id": store_id, "ranges": [coupon_ranges.range_view(r) for r in rows]}


@router.get("/coupon-flags", summary="Offline coupon redemptions the cloud flagged")
def list_flags(
    session: SessionDep, _: ReadRole, who: PrincipalDep,
    store_id: Annotated[Id | None, Query()] = None,
    reason: Annotated[Literal["double_use", "not_allocated", "expired"] | None,
                      Query()] = None,
) -> list[dict[str, Any]]:
    stmt = select(CouponFlag).order_by(CouponFlag.detected_ms, CouponFlag.event_id).limit(1000)
    if (stores := scoped_store_filter(session, who, store_id)) is not None:
        stmt = stmt.where(CouponFlag.store_id.in_(sorted(stores)))
    if reason is not None:
        stmt = stmt.where(CouponFlag.reason == reason)
    return [{"event_id": f.event_id, "code": f.code, "store_id": f.store_id,
             "reason": f.reason, "first_event_id": f.first_event_id,
             "detected_ms": f.detected_ms} for f in session.scalars(stmt)]


# ---- payments (decision 0067) ----------------------------------------------------------------


@public_router.post(
    "/order-payments/notify",
    summary="The payment gateway's signed notice that an online order was paid",
    responses={401: {"description": "bad or missing X-Storefleet-Signature"},
               404: {"description": "no such order, or a payload the cloud never issued"},
               409: {"description": "wrong amount, already paid, replay, cancelled"},
               503: {"description": "the cloud takes no online payments"}})
async def payment_notice(request: Request, app: StateDep, orders: OrdersDep) -> OrderPublic:
    body = await request.body()
    if len(body) > MAX_NOTICE:
        raise ApiProblem(413, "payment notice too large", reason="too_large")
    secret = app.settings.order_payment_secret
    signature = request.headers.get(SIGNATURE_HEADER)

    def apply() -> tuple[Order, str]:
        with app.writer.begin() as session:
            return accept_notice(
                session, body, signature, now_ms=app.clock.now_ms(),
                secret=None if secret is None else secret.get_secret_value())

    try:
        order, outcome = await asyncio.to_thread(apply)
    except PaymentRefused as err:
        orders.metrics.payment_notices.labels(outcome=err.outcome).inc()
        logger.warning("payment notice refused (%s): %s", err.outcome, err.detail)
        raise ApiProblem(err.status, err.detail, reason=err.outcome) from err
    orders.metrics.payment_notices.labels(outcome=outcome).inc()
    if outcome == "paid":
        logger.info("order %s paid (%d %s), dispatching to store %s", order.order_id,
                    order.total or 0, order.currency, order.store_id)
    if order.dispatch != "published":  # paid now, or an earlier publish failed
        order.dispatch = await _publish(app, orders, order)
    return _public(order)
