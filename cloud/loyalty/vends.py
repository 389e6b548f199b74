"""A member's vend at a cabinet earns as a sale does (decision 0066).

The box prices a member's vend with the one engine and puts the sale's fields into the
``vend`` event (``member_id``, ``basket``, ``catalog``, ``member``, ``store``,
``totals``, ``snapshot_version``, ...: the shape of ``cloud.loyalty.sale.SaleData``).
Only a vend that dispensed (``outcome`` ``success``) with a member is a sale; it goes
through ``LoyaltyHook.on_sale`` (points earned as ``earn:<store>/<event id>``, payment
campaigns' coupons), the one path till and cart sales take, so a redelivered event
earns once. Other vends (no member, denied, failed) change nothing here.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlalchemy.orm import Session

from cloud.loyalty.ingest import LoyaltyHook
from cloud.loyalty.sale import SaleData
from protocols.messages import Event

logger = logging.getLogger(__name__)


class VendLoyaltyHook:
    """Callable for ``PostCommitHooks.register("loyalty_vends", {"vend"}, hook)``."""

    def __init__(self, loyalty: LoyaltyHook) -> None:
        self.loyalty = loyalty

    def __call__(self, session: Session, event: Event, now_ms: int) -> None:
        data = event.data
        if data.get("outcome") != "success" or not data.get("member_id"):
            return
        try:
            sale = SaleData.model_validate(data)
        except ValidationError as err:
            self.loyalty.metrics.rejected.labels(reason="bad_vend").inc()
            logger.warning("store %s: vend event %s unusable for loyalty: %s",
                           event.store_id, event.id, err.errors()[0])
            return
        self.loyalty.on_sale(session, event, sale, now_ms)
