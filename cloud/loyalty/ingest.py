"""Loyalty's ingest hook: what a stored ``sale`` or ``refund`` event does to members.

For a sale with a member: earn the points the till computed (``earn:<key>``), record
the points it spent (``spend:<key>``; a POS that spends online uses the same op id, so
the event does not spend twice), hold commissions for the distributor it is attributed
to, and issue the coupons of every matching payment-triggered campaign (``sale:<key>``:
issued exactly once however often the event is ingested). ``<key>`` is
``<store>/<event id>`` (``event_key``): event ids are unique within a store only, so two
stores' sales with the same id are two sales (decision 0026).
For a refund: take back earned points, give back points paid with, reverse commissions
(the refunded sale is the refund's store's sale of that id).
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import Member
from cloud.ingest.hooks import event_key
from cloud.loyalty import distribution, points
from cloud.loyalty.coupons import issue_coupon, sale_campaigns_matching
from cloud.loyalty.errors import InsufficientBalance
from cloud.loyalty.metrics import LoyaltyMetrics
from cloud.loyalty.program import LoyaltyProgram
from cloud.loyalty.sale import RefundData, SaleData
from protocols.messages import Event

logger = logging.getLogger(__name__)


class LoyaltyHook:
    """Callable for ``PostCommitHooks.register("loyalty", {"sale", "refund"}, hook)``."""

    def __init__(self, *, program: LoyaltyProgram, metrics: LoyaltyMetrics) -> None:
        self.program = program
        self.metrics = metrics

    def __call__(self, session: Session, event: Event, now_ms: int) -> None:
        try:
            if event.kind == "sale":
                self.on_sale(session, event, SaleData.model_validate(event.data), now_ms)
            elif event.kind == "refund":
                self.on_refund(session, event, RefundData.model_validate(event.data), now_ms)
        except ValidationError as err:
            self.metrics.rejected.labels(reason=f"bad_{event.kind}").inc()
            logger.warning("store %s: %s event %s unusable for loyalty: %s",
                           event.store_id, event.kind, event.id, err.errors()[0])

    def on_sale(self, session: Session, event: Event, sale: SaleData, now_ms: int) -> None:
        key = event_key(event.store_id, event.id)
        if sale.shared_by is not None:
            made = distribution.record_sale(
                session, sale_id=key, shared_by=sale.shared_by, buyer_id=sale.member_id,
                paid=sale.totals.paid, now_ms=now_ms, program=self.program)
            self.metrics.commissions.labels(status="pending").inc(len(made))
        if sale.member_id is None:
            return
        if session.get(Member, sale.member_id) is None:
            self.metrics.rejected.labels(reason="unknown_member").inc()
            logger.warning("store %s: sale %s names unknown member %s", event.store_id,
                           event.id, sale.member_id)
            return
        totals = sale.totals
        if totals.points_used and "points" not in sale.spends:  # else: authorised before
            try:
                points.spend(session, sale.member_id, totals.points_used,
                             op_id=f"spend:{key}", now_ms=now_ms)
            except InsufficientBalance as err:
                # The till let the shopper pay with points the cloud does not see (an
                # offline sale racing another one): recorded for follow-up, not fatal.
                self.metrics.rejected.labels(reason="points_short").inc()
                logger.warning("store %s: sale %s: %s", event.store_id, event.id, err)
        if totals.points_earned:
            points.credit(session, sale.member_id, totals.points_earned,
                          op_id=f"earn:{key}", now_ms=now_ms,
                          ttl_ms=self.program.points_ttl_ms)
        for campaign in sale_campaigns_matching(session, store_id=event.store_id,
                                                paid=totals.paid):
            _, created = issue_coupon(session, campaign.campaign_id, sale.member_id,
                                      source_key=f"sale:{key}", now_ms=now_ms)
            if created:
                self.metrics.coupons_issued.labels(trigger="sale").inc()

    def on_refund(self, session: Session, event: Event, refund: RefundData,
                  now_ms: int) -> None:
        key = event_key(event.store_id, event.id)
        sale_key = event_key(event.store_id, refund.sale_id)
        done = distribution.reverse_sale(session, sale_id=sale_key, now_ms=now_ms,
                                         refund_id=key, refunded_paid=refund.paid)
        for rev in done:
            status = "reversed" if rev.commission.status == "reversed" else "partly_reversed"
            self.metrics.commissions.labels(status=status).inc()
        if refund.member_id is None or session.get(Member, refund.member_id) is None:
            return
        if refund.points_reversed:
            points.take_back(session, refund.member_id, refund.points_reversed,
                             op_id=f"reverse:{key}", now_ms=now_ms,
                             from_op=f"earn:{sale_key}")
        if refund.points_returned:
            points.credit(session, refund.member_id, refund.points_returned,
                          op_id=f"return:{key}", now_ms=now_ms,
                          ttl_ms=self.program.points_ttl_ms, kind="reverse")
