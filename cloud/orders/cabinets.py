"""Online orders collected at a vending cabinet (decision 0066). Functions take the
caller's session and never commit.

    set_cabinet(session, "S001", "vend-1", lat=, lon=, doors={0: ("COLA", 4)}, now_ms=)
    placed = place_cabinet_order(session, request, key="k-1", now_ms=now, signer=signer)
    placed.order, placed.pickup, placed.code          # the code goes to the shopper only
    msg = dispatch_message(placed.pickup, order, now_ms=now)   # -> cmd/pickups

Routing is the orders' rule applied to cabinets: the nearest cabinet accepting orders
(haversine, ``cloud.orders.routing``; ties to the lower store, then cabinet id) that has
a free door holding the order's sku in the quantity. A chain has ~200,000 cabinets, so
the database is asked in rings (``RINGS_M``): cabinets with such a door inside a
lat/lon box around the shopper (``ix_cabinets_lat``), kept if within the ring's radius
by haversine; the box holds the whole circle, so the nearest of those is the nearest of
all. An empty ring widens to the next; the last is unbounded. A cabinet pickup is one door, so
one sku (several lines of it add up). The door is held with a conditional ``UPDATE ...
WHERE order_id IS NULL AND qty >= n`` (the row the update matched is the one race
winner, as ``routing.reserve``); a lost race moves on to the next door or cabinet. The
order is an ``orders`` row of its store (fulfilment ``pickup``), so the orders API lists
it and shows its status; the door, the cabinet and the code's expiry are in
``cabinet_pickups``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import exc as sa_exc
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from cloud.db.models_cabinets import Cabinet, CabinetDoor, CabinetPickup
from cloud.db.models_orders import Order
from cloud.orders.errors import IdempotencyConflict, InvalidOrder, NoStoreAvailable
from cloud.orders.routing import EARTH_RADIUS_M, haversine_m
from cloud.promotions.signing import SnapshotSigner
from protocols import pickup
from protocols.ids import uuid7
from protocols.orders import Customer, OrderLine

logger = logging.getLogger(__name__)

DEFAULT_HOLD_MS = 24 * 3_600_000  # a day to collect: the usual promise of pickup lockers
MAX_DOORS = 16  # the lock board addresses 16 doors
# Search radii: a walk, a town, a region, then anywhere (a shopper far from every
# cabinet is told the nearest one, however far: the order still fits somewhere).
RINGS_M: tuple[float | None, ...] = (2_000.0, 20_000.0, 200_000.0, None)


class CabinetMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.orders = Counter(
            "storefleet_cabinet_orders", "cabinet pickup orders by result (placed, "
            "retried, no_cabinet, invalid, idempotency_conflict)", ["result"],
            registry=registry)
        self.dispatch = Counter(
            "storefleet_cabinet_dispatch", "pickup dispatches to stores by result",
            ["result"], registry=registry)
        self.status_events = Counter(
            "storefleet_cabinet_pickup_events", "cabinet_pickup events by outcome "
            "(applied, noop, duplicate, illegal, wrong_store, unknown_order, bad_payload)",
            ["outcome"], registry=registry)
        self.door_vends = Counter(
            "storefleet_cabinet_door_vends", "dispensed vends taken off their door's units "
            "by outcome (taken, duplicate, empty, unknown_door, bad_payload)", ["outcome"],
            registry=registry)


@dataclass(frozen=True, slots=True)
class CabinetOrderRequest:
    lines: tuple[OrderLine, ...]
    customer: Customer
    lat: float
    lon: float
    member_id: str | None = None
    note: str = ""
    hold_ms: int = DEFAULT_HOLD_MS

    def need(self) -> tuple[str, int]:
        skus = {ln.sku for ln in self.lines}
        if len(skus) != 1:
            raise InvalidOrder("a cabinet pickup is one door: its lines must be one sku")
        return skus.pop(), sum(ln.qty for ln in self.lines)

    def digest(self) -> str:
        doc = {"fulfilment": "cabinet", "lines": sorted((ln.sku, ln.qty) for ln in self.lines),
               "customer": self.customer.model_dump(mode="json"), "member_id": self.member_id,
               "lat": self.lat, "lon": self.lon, "note": self.note, "hold_ms": self.hold_ms}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PlacedPickup:
    order: Order
    pickup: CabinetPickup
    code: str
    created: bool


def pickup_code(signer: SnapshotSigner, row: CabinetPickup) -> str:
    """The shopper's code: the same every time for the same reservation (Ed25519
    signatures are deterministic), so a retried order gets its code again."""
    msg = pickup.signed_message(store_id=row.store_id, cabinet_id=row.cabinet_id,
                                door=row.door, order_id=row.order_id,
                                expires_ms=row.expires_ms)
    return pickup.make_code(row.order_id, row.expires_ms,
                            signature=base64.b64decode(signer.signature(msg)))


def place_cabinet_order(session: Session, request: CabinetOrderRequest, *, key: str,
                        now_ms: int, signer: SnapshotSigner) -> PlacedPickup:
    """Route to the nearest cabinet with a free door of the sku, hold that door."""
    digest = request.digest()
    existing = session.scalar(select(Order).where(Order.idempotency_key == key))
    if existing is not None:
        row = session.get(CabinetPickup, existing.order_id)
        if existing.request_hash != digest or row is None:
            raise IdempotencyConflict(key)
        return PlacedPickup(existing, row, pickup_code(signer, row), created=False)
    sku, qty = request.need()
    order_id = uuid7(now_ms)
    for cab in _nearest_with_door(session, sku=sku, qty=qty, lat=request.lat, lon=request.lon):
        door = _hold_door(session, cab, sku=sku, qty=qty, order_id=order_id, now_ms=now_ms)
        if door is None:
            continue
        distance = round(haversine_m(request.lat, request.lon, cab.lat, cab.lon))
        order = Order(
            order_id=order_id, idempotency_key=key, request_hash=digest,
            store_id=cab.store_id, fulfilment="pickup", status="placed",
            lines=[ln.model_dump(mode="json") for ln in request.lines],
            customer=request.customer.model_dump(mode="json"), member_id=request.member_id,
            note=request.note, distance_m=distance, created_ms=now_ms, updated_ms=now_ms,
            dispatch="pending")
        row = CabinetPickup(order_id=order_id, store_id=cab.store_id,
                            cabinet_id=cab.cabinet_id, door=door, sku=sku, qty=qty,
                            status="reserved", expires_ms=now_ms + request.hold_ms,
                            created_ms=now_ms, updated_ms=now_ms)
        try:
            with session.begin_nested():
                session.add_all([order, row])
        except sa_exc.IntegrityError:
            # The same key placed by a concurrent retry: theirs won; give the door back.
            session.execute(update(CabinetDoor).where(CabinetDoor.order_id == order_id)
                            .values(order_id=None))
            again = session.scalar(select(Order).where(Order.idempotency_key == key))
            held = session.get(CabinetPickup, again.order_id) if again is not None else None
            if again is None or held is None or again.request_hash != digest:
                raise IdempotencyConflict(key) from None
            return PlacedPickup(again, held, pickup_code(signer, held), created=False)
        logger.info("cabinet order %s -> store %s cabinet %s door %d (%d m)", order_id,
                    cab.store_id, cab.cabinet_id, door, distance)
        return PlacedPickup(order, row, pickup_code(signer, row), created=True)
    raise NoStoreAvailable(f"no cabinet accepting orders has a free door with {sku} x{qty}",
                           candidates=0)


def _nearest_with_door(session: Session, *, sku: str, qty: int, lat: float,
                       lon: float) -> Iterator[Cabinet]:
    """Cabinets with a free door of ``qty`` x ``sku``, nearest first, ring by ring (a
    cabinet a lost race skipped in one ring may come again in the next: harmless)."""
    free = exists().where(
        CabinetDoor.store_id == Cabinet.store_id, CabinetDoor.cabinet_id == Cabinet.cabinet_id,
        CabinetDoor.sku == sku, CabinetDoor.qty >= qty, CabinetDoor.order_id.is_(None))
    for radius in RINGS_M:
        stmt = select(Cabinet).where(Cabinet.accepts_orders, free)
        if radius is not None:
            dlat = math.degrees(radius / EARTH_RADIUS_M)
            # a degree of longitude shrinks with cos(lat); near a pole take all of them
            dlon = min(180.0, dlat / max(math.cos(math.radians(lat)), 1e-6))
            stmt = stmt.where(Cabinet.lat.between(lat - dlat, lat + dlat),
                              Cabinet.lon.between(lon - dlon, lon + dlon))
        found = [(haversine_m(lat, lon, c.lat, c.lon), c.store_id, c.cabinet_id, c)
                 for c in session.scalars(stmt)]
        inside = sorted((f for f in found if radius is None or f[0] <= radius),
                        key=lambda f: f[:3])
        for *_, cab in inside:
            yield cab


def _hold_door(session: Session, cab: Cabinet, *, sku: str, qty: int, order_id: str,
               now_ms: int) -> int | None:
    doors = session.scalars(
        select(CabinetDoor.door).where(
            CabinetDoor.store_id == cab.store_id, CabinetDoor.cabinet_id == cab.cabinet_id,
            CabinetDoor.sku == sku, CabinetDoor.qty >= qty, CabinetDoor.order_id.is_(None))
        .order_by(CabinetDoor.qty, CabinetDoor.door)).all()  # the fullest doors stay for vends
    for door in doors:
        result = session.execute(
            update(CabinetDoor)
            .where(CabinetDoor.store_id == cab.store_id,
                   CabinetDoor.cabinet_id == cab.cabinet_id, CabinetDoor.door == door,
                   CabinetDoor.order_id.is_(None), CabinetDoor.qty >= qty)
            .values(order_id=order_id, updated_ms=now_ms))
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return int(door)
    return None


def dispatch_message(row: CabinetPickup, order: Order, *, now_ms: int) -> pickup.PickupDispatch:
    return pickup.PickupDispatch(
        order_id=row.order_id, store_id=row.store_id, cabinet_id=row.cabinet_id,
        door=row.door, lines=[pickup.PickupLine(sku=row.sku, qty=row.qty)],
        member_id=order.member_id, expires_ms=row.expires_ms, ts=now_ms)


def set_cabinet(session: Session, store_id: str, cabinet_id: str, *, lat: float, lon: float,
                accepts_orders: bool, doors: Mapping[int, tuple[str, int]],
                now_ms: int) -> Cabinet:
    """Where a cabinet stands and what its doors hold (a count, absolute). A door held
    for an order keeps its hold; a door left out of ``doors`` is unchanged."""
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise InvalidOrder("lat must be in [-90, 90] and lon in [-180, 180]")
    row = session.get(Cabinet, (store_id, cabinet_id))
    if row is None:
        row = Cabinet(store_id=store_id, cabinet_id=cabinet_id, lat=lat, lon=lon,
                      accepts_orders=accepts_orders, updated_ms=now_ms)
        session.add(row)
    else:
        row.lat, row.lon, row.accepts_orders, row.updated_ms = lat, lon, accepts_orders, now_ms
    for door, (sku, qty) in doors.items():
        if not 0 <= door < MAX_DOORS or qty < 0:
            raise InvalidOrder(f"door {door}: doors are 0..15 and qty at least 0")
        d = session.get(CabinetDoor, (store_id, cabinet_id, door))
        if d is None:
            session.add(CabinetDoor(store_id=store_id, cabinet_id=cabinet_id, door=door,
                                    sku=sku, qty=qty, order_id=None, updated_ms=now_ms))
        elif d.order_id is not None and d.sku != sku:
            raise InvalidOrder(f"door {door} is held for order {d.order_id}: its sku stays")
        else:
            d.sku, d.qty, d.updated_ms = sku, qty, now_ms
    session.flush()
    return row


def cabinet_view(session: Session, store_id: str, cabinet_id: str) -> dict[str, object] | None:
    row = session.get(Cabinet, (store_id, cabinet_id))
    if row is None:
        return None
    doors = session.scalars(select(CabinetDoor).where(
        CabinetDoor.store_id == store_id, CabinetDoor.cabinet_id == cabinet_id)
        .order_by(CabinetDoor.door))
    return {"store_id": store_id, "cabinet_id": cabinet_id, "lat": row.lat, "lon": row.lon,
            "accepts_orders": row.accepts_orders,
            "doors": {str(d.door): {"sku": d.sku, "qty": d.qty, "order_id": d.order_id}
                      for d in doors}}
