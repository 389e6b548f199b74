"""Applying a store's ``order_status`` events: a state machine, idempotent end to end.

Each event is recorded once by its id (``order_status_events``) with its outcome:

=================  =============================================================
``applied``        a legal transition (``protocols.orders.can_transition``)
``noop``           the order already is in that state (the store re-reported it)
``illegal``        a transition the state machine refuses; the order is unchanged
``wrong_store``    the event's store is not the store the order was routed to
``unknown_order``  no such order
=================  =============================================================

A redelivered event (same id) is a ``duplicate`` and changes nothing. A cancel gives
the reserved units back to the store's stock. An order that reaches ``handed_over`` or
``delivered`` earns its member the points priced at placement (``earn``, decision 0067).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import ValidationError
from sqlalchemy.orm import Session

from cloud.db.models_orders import Order, OrderStatusEvent
from cloud.orders import routing
from cloud.orders.metrics import OrderMetrics
from protocols.messages import Event
from protocols.orders import OrderStatusData, can_transition

logger = logging.getLogger(__name__)


Earn = Callable[[Session, Order, int], None]
"""Credits an order's points (``cloud.orders.earn.OrderEarner``)."""


def apply_status(session: Session, *, event_id: str, store_id: str, data: OrderStatusData,
                 now_ms: int, earn: Earn | None = None) -> str:
    """Apply one status report; returns its outcome (see the module docstring)."""
    if session.get(OrderStatusEvent, (store_id, event_id)) is not None:
        return "duplicate"
    order = session.get(Order, data.order_id, with_for_update=True)
    before = order.status if order is not None else None
    if order is None:
        outcome = "unknown_order"
    elif order.store_id != store_id:
        outcome = "wrong_store"
    elif order.status == data.status:
        outcome = "noop"
    elif not can_transition(order.fulfilment, order.status, data.status):  # type: ignore[arg-type]
        outcome = "illegal"
    else:
        outcome = "applied"
        order.status = data.status
        order.updated_ms = now_ms
        if data.status == "cancelled":
            routing.release(session, order.store_id, order.lines, now_ms=now_ms)
        elif data.status in ("handed_over", "delivered") and earn is not None:
            earn(session, order, now_ms)
    session.add(OrderStatusEvent(
        event_id=event_id, order_id=data.order_id, store_id=store_id, from_status=before,
        to_status=data.status, outcome=outcome, ts=data.ts, received_ms=now_ms))
    session.flush()  # a concurrent worker's copy of this event fails here (primary key)
    return outcome


class OrderStatusHook:
    """Callable for ``PostCommitHooks.register("orders", {"order_status"}, hook)``."""

    def __init__(self, *, metrics: OrderMetrics, earn: Earn | None = None) -> None:
        self.metrics = metrics
        self.earn = earn

    def __call__(self, session: Session, event: Event, now_ms: int) -> None:
        try:
            data = OrderStatusData.model_validate(event.data)
        except ValidationError as err:
            self.metrics.status_events.labels(outcome="bad_payload").inc()
            logger.warning("store %s: order_status event %s unusable: %s", event.store_id,
                           event.id, err.errors()[0])
            return
        outcome = apply_status(session, event_id=event.id, store_id=event.store_id,
                               data=data, now_ms=now_ms, earn=self.earn)
        self.metrics.status_events.labels(outcome=outcome).inc()
        if outcome in ("illegal", "wrong_store", "unknown_order"):
            logger.warning("store %s: order %s -> %s refused: %s", event.store_id,
                           data.order_id, data.status, outcome)
