"""Vending cabinets and online orders collected at them (decision 0066).

=============================================  ==========  ============================
``PUT  /stores/{id}/cabinets/{cabinet}``       hq-admin    where it stands, its doors
                                                           ``{door: {sku, qty}}``
``GET  /stores/{id}/cabinets/{cabinet}``       readers     with the doors held
``POST /cabinet-orders``                       hq-admin,   place: nearest cabinet with a
                                               manager     free door of the sku; the
                                                           answer carries the pickup code
``GET  /cabinet-orders/{id}``                  hq-admin,   the pickup, its status and code
                                               manager
=============================================  ==========  ============================
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from cloud.api.deps import AdminRole, PrincipalDep, ReadRole, SessionDep, StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.routes.orders import OrderRole
from cloud.api.schemas import Text
from cloud.db.models_cabinets import CabinetPickup
from cloud.db.models_orders import Order
from cloud.orders import cabinets
from cloud.orders.cabinet_status import dispatch_pickup
from cloud.orders.errors import (
    IdempotencyConflict,
    InvalidOrder,
    NoStoreAvailable,
    OrderError,
)
from cloud.orders.service import set_dispatch
from cloud.promotions.signing import SnapshotSigner
from protocols.ids import Id
from protocols.orders import Customer, OrderLine

logger = logging.getLogger(__name__)

router = APIRouter(tags=["cabinets"], route_class=JsonRoute)

StoreId = Annotated[Id, Path(description="store id")]
CabinetId = Annotated[Id, Path(description="the cabinet's device id at its store")]


@dataclass
class CabinetState:
    """Hung on ``app.state.cabinets`` by ``cloud.main.create_app``."""

    metrics: cabinets.CabinetMetrics
    signer: SnapshotSigner  # the key the boxes trust: the pickup codes' signer


def get_cabinet_state(request: Request) -> CabinetState:
    state: CabinetState = request.app.state.cabinets
    return state


CabinetDep = Annotated[CabinetState, Depends(get_cabinet_state)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DoorStock(_Body):
    sku: Id
    qty: int = Field(ge=0, le=10_000)


class CabinetUpdate(_Body):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accepts_orders: bool = True
    doors: dict[Annotated[int, Field(ge=0, lt=16)], DoorStock] = Field(default_factory=dict)


class CabinetOrderCreate(_Body):
    idempotency_key: Text | None = Field(default=None, min_length=8, max_length=128)
    lines: list[OrderLine] = Field(min_length=1, max_length=20)
    customer: Customer
    member_id: Id | None = None
    note: Text = Field(default="", max_length=300)
    lat: float = Field(ge=-90, le=90, description="the shopper's position")
    lon: float = Field(ge=-180, le=180)
    hold_h: int = Field(default=24, ge=1, le=72, description="hours to collect it in")


class CabinetOrderPublic(BaseModel):
    order_id: str
    store_id: str
    cabinet_id: str
    door: int
    sku: str
    qty: int
    pickup_status: str
    order_status: str
    pickup_code: str
    expires_ms: int
    distance_m: int
    dispatch: str


def _public(order: Order, row: CabinetPickup, code: str) -> CabinetOrderPublic:
    return CabinetOrderPublic(
        order_id=order.order_id, store_id=row.store_id, cabinet_id=row.cabinet_id,
        door=row.door, sku=row.sku, qty=row.qty, pickup_status=row.status,
        order_status=order.status, pickup_code=code, expires_ms=row.expires_ms,
        distance_m=order.distance_m, dispatch=order.dispatch)


def _problem(err: OrderError, metrics: cabinets.CabinetMetrics) -> ApiProblem:
    if isinstance(err, NoStoreAvailable):
        metrics.orders.labels(result="no_cabinet").inc()
        return ApiProblem(409, err.detail, reason="no_cabinet_available")
    if isinstance(err, IdempotencyConflict):
        metrics.orders.labels(result="idempotency_conflict").inc()
        return ApiProblem(409, str(err), reason="idempotency_conflict")
    if isinstance(err, InvalidOrder):
        metrics.orders.labels(result="invalid").inc()
        return ApiProblem(422, err.detail, reason="invalid")
    metrics.orders.labels(result="error").inc()
    return ApiProblem(400, str(err))


@router.put("/stores/{store_id}/cabinets/{cabinet_id}",
            summary="Set where a cabinet stands and what its doors hold")
def put_cabinet(store_id: StoreId, cabinet_id: CabinetId, body: CabinetUpdate,
                app: StateDep, state: CabinetDep, _: AdminRole) -> dict[str, Any]:
    try:
        with app.writer.begin() as session:
            cabinets.set_cabinet(
                session, store_id, cabinet_id, lat=body.lat, lon=body.lon,
                accepts_orders=body.accepts_orders,
                doors={d: (s.sku, s.qty) for d, s in body.doors.items()},
                now_ms=app.clock.now_ms())
            view = cabinets.cabinet_view(session, store_id, cabinet_id)
    except OrderError as err:
        logger.warning("cabinet %s/%s refused: %s", store_id, cabinet_id, err)
        raise _problem(err, state.metrics) from err
    assert view is not None
    return view


@router.get("/stores/{store_id}/cabinets/{cabinet_id}", summary="A cabinet and its doors")
def get_cabinet(store_id: StoreId, cabinet_id: CabinetId, session: SessionDep,
                _: ReadRole) -> dict[str, Any]:
    view = cabinets.cabinet_view(session, store_id, cabinet_id)
    if view is None:
        raise ApiProblem(404, f"no cabinet {cabinet_id!r} at store {store_id!r}")
    return view


def _place(sessions: sessionmaker[Session], request: cabinets.CabinetOrderRequest, key: str,
           now_ms: int, signer: SnapshotSigner) -> cabinets.PlacedPickup:
    with sessions.begin() as session:
        placed = cabinets.place_cabinet_order(session, request, key=key, now_ms=now_ms,
                                              signer=signer)
        session.expunge_all()  # read after the commit, outside the session
        return placed


def _set_dispatch(sessions: sessionmaker[Session], order_id: str, result: str) -> None:
    with sessions.begin() as session:
        set_dispatch(session, order_id, result)


@router.post(
    "/cabinet-orders", status_code=201,
    summary="Order online, collect at the nearest cabinet with the goods: a door is held "
            "and the answer carries the signed pickup code",
    responses={200: {"description": "a retry with the same idempotency key"},
               409: {"description": "no cabinet can hold it, or the key was reused"}})
async def create_cabinet_order(
    body: CabinetOrderCreate, app: StateDep, state: CabinetDep, _: OrderRole,
    response: Response,
    idempotency_key: Annotated[Text | None, Header(min_length=8, max_length=128)] = None,
) -> CabinetOrderPublic:
    key = idempotency_key or body.idempotency_key
    if key is None:
        state.metrics.orders.labels(result="invalid").inc()
        raise ApiProblem(422, "an Idempotency-Key header (or idempotency_key) is required",
                         reason="invalid")
    request = cabinets.CabinetOrderRequest(
        lines=tuple(body.lines), customer=body.customer, lat=body.lat, lon=body.lon,
        member_id=body.member_id, note=body.note, hold_ms=body.hold_h * 3_600_000)
    try:
        placed = await asyncio.to_thread(_place, app.writer, request, key, app.clock.now_ms(),
                                         state.signer)
    except OrderError as err:
        logger.warning("cabinet order refused: %s", err)
        raise _problem(err, state.metrics) from err
    order, row = placed.order, placed.pickup
    state.metrics.orders.labels(result="placed" if placed.created else "retried").inc()
    if not placed.created:
        response.status_code = 200
    if placed.created or order.dispatch != "published":
        ok = await dispatch_pickup(app.publisher, row, order, now_ms=app.clock.now_ms(),
                                   metrics=state.metrics)
        order.dispatch = "published" if ok else "failed"
        await asyncio.to_thread(_set_dispatch, app.writer, order.order_id, order.dispatch)
    response.headers["Location"] = f"/api/v1/cabinet-orders/{order.order_id}"
    return _public(order, row, placed.code)


@router.get("/cabinet-orders/{order_id}", summary="A cabinet pickup with its code and status",
            responses={404: {"description": "no such cabinet order"}})
def get_cabinet_order(order_id: Annotated[Id, Path()], session: SessionDep, state: CabinetDep,
                      _: OrderRole, who: PrincipalDep) -> CabinetOrderPublic:
    row = session.get(CabinetPickup, order_id)
    order = session.get(Order, order_id)
    if row is None or order is None:
        raise ApiProblem(404, f"no cabinet order {order_id!r}")
    who.check_store(session, row.store_id)
    return _public(order, row, cabinets.pickup_code(state.signer, row))
