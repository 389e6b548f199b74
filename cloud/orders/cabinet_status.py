"""A cabinet pickup's status from its store box, and its dispatch there (decision 0066).

``cabinet_pickup`` events (``protocols.pickup.PickupStatusData``) are applied once each,
recorded by event id in ``order_status_events`` beside the orders' own reports (so
``GET /orders/{id}`` shows the whole history) with an outcome: ``applied``, ``noop``
(already in that state), ``illegal`` (``pickup.TRANSITIONS`` refuses it),
``wrong_store``, ``unknown_order``; a redelivered event is a ``duplicate``. Applied:

==============  =======================  ============================================
pickup          order status             the door
==============  =======================  ============================================
``ready``       ``ready``                stays held
``picked_up``   ``handed_over``          its units less the order's, hold released
``expired``     ``cancelled``            hold released, its units sellable again
==============  =======================  ============================================

A pickup the box never reported on (it never got the dispatch, or went away) is expired
by the cloud's scheduler (``expire_overdue``) once ``expires_ms`` plus ``EXPIRY_GRACE_MS``
has passed, under the event id the box would use, so the box's own ``expired`` report is
then a duplicate. A box that was offline past the grace and reports ``picked_up`` still
wins: the units come off the door, the order is handed over, and it is logged.

A ``vend`` event that dispensed (``outcome`` ``success``) takes one unit off its door
(``cabinet`` and ``door`` of the event), once per (store, event id) (``cabinet_vends``),
so routing does not send an order to a door a walk-up emptied. A door the cloud does not
know, or one already at 0 (a stale count), moves nothing and is counted.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.db.models_cabinets import CabinetDoor, CabinetPickup, CabinetVend
from cloud.db.models_orders import Order, OrderStatusEvent
from cloud.errors import PublishError
from cloud.orders.cabinets import CabinetMetrics, dispatch_message
from cloud.publish import Publisher
from protocols import pickup
from protocols.codec import encode
from protocols.messages import Event

logger = logging.getLogger(__name__)

# How long after a code's expiry the cloud waits for the box's report before expiring
# the pickup itself: an hour covers a box's clock skew and a short outage.
EXPIRY_GRACE_MS = 3_600_000


def apply_pickup_status(session: Session, *, event_id: str, store_id: str,
                        data: pickup.PickupStatusData, now_ms: int) -> str:
    if session.get(OrderStatusEvent, (store_id, event_id)) is not None:
        return "duplicate"
    row = session.get(CabinetPickup, data.order_id, with_for_update=True)
    order = session.get(Order, data.order_id)
    before = order.status if order is not None else None
    if row is None or order is None:
        outcome = "unknown_order"
    elif row.store_id != store_id:
        outcome = "wrong_store"
    elif row.status == data.status:
        outcome = "noop"
    elif data.status not in pickup.TRANSITIONS.get(row.status, frozenset()):
        outcome = "illegal"
    else:
        outcome = "applied"
        row.status, row.updated_ms = data.status, now_ms
        order.status, order.updated_ms = pickup.ORDER_STATUS[data.status], now_ms
        door = (CabinetDoor.store_id == row.store_id, CabinetDoor.cabinet_id == row.cabinet_id,
                CabinetDoor.door == row.door, CabinetDoor.order_id == row.order_id)
        if data.status == "picked_up" and before == "cancelled":  # the sweep came first
            logger.warning("store %s: pickup %s collected after the cloud expired it; "
                           "door %d's count corrected", store_id, row.order_id, row.door)
            session.execute(update(CabinetDoor).where(*door[:3], CabinetDoor.qty >= row.qty)
                            .values(qty=CabinetDoor.qty - row.qty, updated_ms=now_ms))
        elif data.status == "picked_up":
            session.execute(update(CabinetDoor).where(*door, CabinetDoor.qty >= row.qty)
                            .values(qty=CabinetDoor.qty - row.qty, order_id=None,
                                    updated_ms=now_ms))
            session.execute(update(CabinetDoor).where(*door)  # counted short: none left
                            .values(qty=0, order_id=None, updated_ms=now_ms))
        elif data.status == "expired":
            session.execute(update(CabinetDoor).where(*door)
                            .values(order_id=None, updated_ms=now_ms))
    session.add(OrderStatusEvent(
        event_id=event_id, order_id=data.order_id, store_id=store_id, from_status=before,
        to_status=pickup.ORDER_STATUS.get(data.status, data.status), outcome=outcome,
        ts=data.ts, received_ms=now_ms))
    session.flush()  # a concurrent worker's copy of this event fails here (primary key)
    return outcome


def apply_vend(session: Session, *, event_id: str, store_id: str, cabinet_id: str,
               door: int, now_ms: int) -> str:
    """One unit off the door of a dispensed vend: ``taken``, ``duplicate``, ``unknown_door``
    or ``empty``."""
    if session.get(CabinetVend, (store_id, event_id)) is not None:
        return "duplicate"
    result = session.execute(
        update(CabinetDoor)
        .where(CabinetDoor.store_id == store_id, CabinetDoor.cabinet_id == cabinet_id,
               CabinetDoor.door == door, CabinetDoor.qty >= 1)
        .values(qty=CabinetDoor.qty - 1, updated_ms=now_ms))
    moved = result.rowcount == 1  # type: ignore[attr-defined]
    outcome = "taken" if moved else (
        "empty" if session.get(CabinetDoor, (store_id, cabinet_id, door)) else "unknown_door")
    session.add(CabinetVend(store_id=store_id, event_id=event_id, cabinet_id=cabinet_id,
                            door=door, moved=moved, received_ms=now_ms))
    session.flush()  # a concurrent worker's copy fails here (primary key): one move
    return outcome


def expire_overdue(session: Session, *, now_ms: int,
                   grace_ms: int = EXPIRY_GRACE_MS) -> int:
    """Expire the pickups whose time and grace ran out without a report from the box;
    returns how many (a scheduler job)."""
    rows = session.scalars(select(CabinetPickup).where(
        CabinetPickup.status.in_(("reserved", "ready")),
        CabinetPickup.expires_ms < now_ms - grace_ms).limit(1_000)).all()
    done = 0
    for row in rows:
        data = pickup.PickupStatusData(order_id=row.order_id, cabinet_id=row.cabinet_id,
                                       door=row.door, status="expired", ts=now_ms,
                                       reason="no report from the store")
        outcome = apply_pickup_status(session, store_id=row.store_id, data=data,
                                      event_id=pickup.event_id(row.order_id, "expired"),
                                      now_ms=now_ms)
        if outcome == "applied":
            done += 1
            logger.warning("store %s: pickup %s expired by the cloud: the box never "
                           "reported it", row.store_id, row.order_id)
    return done


class PickupStatusHook:
    """Callable for ``PostCommitHooks.register("cabinet_pickups", {pickup.KIND, "vend"},
    hook)``: pickup reports, and the door units of dispensed vends."""

    def __init__(self, *, metrics: CabinetMetrics) -> None:
        self.metrics = metrics

    def __call__(self, session: Session, event: Event, now_ms: int) -> None:
        if event.kind == "vend":
            self._vend(session, event, now_ms)
            return
        try:
            data = pickup.PickupStatusData.model_validate(event.data)
        except ValidationError as err:
            self.metrics.status_events.labels(outcome="bad_payload").inc()
            logger.warning("store %s: cabinet_pickup event %s unusable: %s", event.store_id,
                           event.id, err.errors()[0])
            return
        outcome = apply_pickup_status(session, event_id=event.id, store_id=event.store_id,
                                      data=data, now_ms=now_ms)
        self.metrics.status_events.labels(outcome=outcome).inc()
        if outcome in ("illegal", "wrong_store", "unknown_order"):
            logger.warning("store %s: pickup %s -> %s refused: %s", event.store_id,
                           data.order_id, data.status, outcome)


    def _vend(self, session: Session, event: Event, now_ms: int) -> None:
        data = event.data
        if data.get("outcome") != "success":
            return
        cabinet, door = data.get("cabinet"), data.get("door")
        if not isinstance(cabinet, str) or not isinstance(door, int) or not 0 <= door < 16:
            self.metrics.door_vends.labels(outcome="bad_payload").inc()
            logger.warning("store %s: vend event %s names no cabinet door", event.store_id,
                           event.id)
            return
        if len(cabinet) > 64:
            self.metrics.door_vends.labels(outcome="bad_payload").inc()
            logger.warning("store %s: vend event %s: cabinet id too long", event.store_id,
                           event.id)
            return
        outcome = apply_vend(session, event_id=event.id, store_id=event.store_id,
                             cabinet_id=cabinet, door=door, now_ms=now_ms)
        self.metrics.door_vends.labels(outcome=outcome).inc()
        if outcome == "empty":
            logger.warning("store %s: cabinet %s door %d vended with none left in the "
                           "cloud's count (stale)", event.store_id, cabinet, door)


async def dispatch_pickup(publisher: Publisher, row: CabinetPickup, order: Order, *,
                          now_ms: int, metrics: CabinetMetrics) -> bool:
    """Publish the pickup to its store (``cmd/pickups``, QoS 1, not retained: a store
    offline gets its queued pickups from its persistent session, as orders)."""
    msg = dispatch_message(row, order, now_ms=now_ms)
    try:
        await publisher.publish(pickup.topic(row.store_id), encode(msg), qos=1, retain=False)
    except PublishError as err:
        metrics.dispatch.labels(result="failed").inc()
        logger.error("pickup %s not published to store %s: %s", row.order_id, row.store_id,
                     err)
        return False
    metrics.dispatch.labels(result="published").inc()
    return True
