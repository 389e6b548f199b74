"""Points for an online order, through loyalty's own sale path (decision 0067).

An order paid online earns when the goods are with the member (``handed_over`` or
``delivered``), not at payment: a cancelled order then never earned anything to take
back. An ``at_store`` order earns nothing here: the store takes its money at its till,
and that sale earns like any other (earning here too would credit it twice). The points
are those the engine priced at placement (``priced.points_earned``). The order becomes a
``sale`` as loyalty reads one (``cloud.loyalty.sale.SaleData``, channel ``online``) with
the event id ``online-<order id>`` at the order's store, and goes through the same
``LoyaltyHook.on_sale`` as a till's sale: ``earn:<store>/online-<order id>`` credits
once however often the status event is redelivered, and sale-triggered campaigns issue
their coupons once. It is not stored as an event, so it moves no stock (the order's
units were taken at placement) and is not re-priced by the till audit.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from cloud.db.models_orders import Order
from cloud.loyalty.ingest import LoyaltyHook
from cloud.loyalty.sale import SaleData, SaleTotals
from cloud.orders.metrics import OrderMetrics
from protocols.messages import Event

logger = logging.getLogger(__name__)



def sale_event_id(order: Order) -> str:
    return f"online-{order.order_id}"


class OrderEarner:
    def __init__(self, *, loyalty: LoyaltyHook, metrics: OrderMetrics) -> None:
        self.loyalty = loyalty
        self.metrics = metrics

    def __call__(self, session: Session, order: Order, now_ms: int) -> None:
        priced = order.priced
        if order.member_id is None or priced is None or order.payment != "paid":
            return  # no member, an order placed before pricing, or not paid online
        sale = SaleData(
            member_id=order.member_id, channel="online",
            snapshot_version=int(priced["promotions_version"]),
            engine_version=str(priced["engine_version"]), priced_at=int(priced["priced_at"]),
            totals=SaleTotals(subtotal=int(priced["subtotal"]),
                              discount=int(priced["discount"]), total=int(priced["total"]),
                              paid=int(priced["total"]),
                              points_earned=int(priced["points_earned"])),
            charged=order.total)
        event = Event(id=sale_event_id(order), kind="sale", store_id=order.store_id,
                      seq=0, ts=now_ms, data=sale.model_dump(mode="json"))
        self.loyalty.on_sale(session, event, sale, now_ms)
        if sale.totals.points_earned:
            self.metrics.points_earned.inc(sale.totals.points_earned)
            logger.info("order %s: member %s earns %d points", order.order_id,
                        order.member_id, sale.totals.points_earned)
