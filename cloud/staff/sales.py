"""The sales index: one ``store_sales`` row per ``sale`` event, for the staff figures.

Why a table of its own rather than the events: a store's sales in a period, a member's
last purchases and "last bought when" are GROUP BYs over (store, time) and (member,
time); the ``events`` table holds every kind of business event with the sale's figures
inside JSON, where neither database can index them the same way. The hook writes the
row after the event's commit (``cloud.ingest.hooks``), once per (store, event id): a
redelivered event is ``ON CONFLICT DO NOTHING``. Sale events stored before migration
0022 were copied in by the migration.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlalchemy.orm import Session

from cloud.db.models_staff import StoreSale
from cloud.db.writes import dialect_insert
from cloud.loyalty.sale import SaleData
from cloud.staff.metrics import StaffMetrics
from protocols.ids import valid_id
from protocols.messages import Event

logger = logging.getLogger(__name__)


def record_sale(session: Session, *, store_id: str, event_id: str, ts: int,
                sale: SaleData) -> bool:
    """Index one sale; False when it was already indexed."""
    # Not an id (too long, odd characters): no member the cloud could know.
    member_id = sale.member_id if valid_id(sale.member_id) else None
    stmt = dialect_insert(session, StoreSale).values(
        store_id=store_id, event_id=event_id, member_id=member_id,
        paid=sale.totals.paid, ts=ts).on_conflict_do_nothing().returning(StoreSale.event_id)
    return session.execute(stmt).scalar() is not None  # RETURNING: no row when it was there


class SalesHook:
    """Callable for ``PostCommitHooks.register("staff_sales", {"sale"}, hook)``."""

    def __init__(self, metrics: StaffMetrics) -> None:
        self.metrics = metrics

    def __call__(self, session: Session, event: Event, now_ms: int) -> None:
        try:
            sale = SaleData.model_validate(event.data)
        except ValidationError as err:
            self.metrics.sales.labels(result="bad_sale").inc()
            logger.warning("store %s: sale %s not indexed for staff figures: %s",
                           event.store_id, event.id, err.errors()[0])
            return
        added = record_sale(session, store_id=event.store_id, event_id=event.id,
                            ts=event.ts, sale=sale)
        self.metrics.sales.labels(result="indexed" if added else "duplicate").inc()
