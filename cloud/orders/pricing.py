"""Pricing an online order at placement, with the one engine's ``online`` channel.

    pricer = OrderPricer(repricer=retail.repricer, program=retail.program)
    pricer.price_order(session, order, request, now_ms=now, payment="due")

Inputs, all the cloud's own (decision 0067):

* unit prices from the routed store's price book (the chain's book overlaid with the
  store's, ``cloud.pricebook.service.store_items``), only the order's skus read out;
* promotions from the latest publication's ``online`` snapshot for that store, compiled
  once per (version, store, channel) by the shared ``Repricer`` cache: the same rules
  the sale audit re-prices with;
* the member's tier (member prices, tier earn rates) over the program's tier window;
* coupons: a member coupon code (``cloud.loyalty.coupons``) is checked before pricing
  and redeemed, single use, only when the engine applied its campaign's code; any other
  code is presented to the engine as is (a public code such as ``SPRING10``). A code
  that gave nothing stays with the shopper and is listed in ``coupons_rejected``.

The result is frozen on the order (``currency``, ``total``, ``priced``): a retried
placement returns the stored order, so its price never moves. Online orders spend no
points or stored value (the basket asks for none).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from cloud.db.models_loyalty import Campaign, Coupon
from cloud.db.models_loyalty import Member as MemberRow
from cloud.db.models_orders import Order
from cloud.loyalty.coupons import is_redeemed, redeem_coupon
from cloud.loyalty.errors import Conflict, CouponUnusable, NotFound
from cloud.loyalty.program import LoyaltyProgram
from cloud.loyalty.tiers import member_tier
from cloud.orders.errors import InvalidOrder, Unpriceable
from cloud.pricebook.service import store_items
from cloud.promotions.reprice import Repricer
from cloud.promotions.service import latest_publication
from pricing import (
    Basket,
    Catalog,
    Item,
    Line,
    Member,
    PricedBasket,
    PricingError,
    PromotionSnapshot,
    Ruleset,
    Store,
    compile,
    price,
)
from protocols.orders import OrderLine

logger = logging.getLogger(__name__)

CHANNEL = "online"


class OrderPricer:
    def __init__(self, *, repricer: Repricer, program: LoyaltyProgram) -> None:
        self.repricer = repricer
        self.program = program

    def price_order(self, session: Session, order: Order, *, lines: tuple[OrderLine, ...],
                    coupons: tuple[str, ...], now_ms: int, payment: str) -> None:
        """Price ``order`` (already routed) and freeze the result on it.

        ``payment``: ``due`` (paid online by notice) or ``at_store``; an order that
        costs nothing is ``paid`` at once. Raises ``Unpriceable`` or ``InvalidOrder``."""
        currency, catalog = self._catalog(session, order.store_id, lines)
        version, ruleset = self._ruleset(session, order.store_id, currency)
        member, tier = self._member(session, order.member_id, currency, now_ms=now_ms)
        engine_codes = self._coupons(session, coupons, member_id=order.member_id,
                                     now_ms=now_ms)
        basket = Basket(
            id=order.order_id, currency=currency,
            lines=tuple(Line(line_id=f"l{n}", sku=ln.sku, qty=ln.qty)
                        for n, ln in enumerate(lines, start=1)),
            coupons=tuple(dict.fromkeys(engine_codes.values())))
        try:
            priced = price(basket, catalog, ruleset, member, now_ms,
                           Store(id=order.store_id, currency=currency))
        except PricingError as err:
            raise Unpriceable("unpriceable", f"the engine refused the order: {err}") from err
        # An engine code applies once per basket: of two codes for one coupon the first
        # is used and the other stays with the shopper (as at the till).
        gave = set(basket.coupons) - set(priced.rejected_coupons)
        used = []
        for code, engine in engine_codes.items():
            if engine in gave:
                gave.discard(engine)
                used.append(code)
        for code in used:
            if session.get(Coupon, code) is not None:
                try:
                    redeem_coupon(session, code, now_ms=now_ms, store_id=order.store_id,
                                  sale_id=order.order_id, member_id=order.member_id)
                except CouponUnusable as err:  # lost a race with another redemption
                    raise Unpriceable("coupon_unusable", str(err)) from err
        order.currency = currency
        order.total = priced.paid
        order.priced = _frozen(priced, coupons=coupons, used=used, version=version,
                               tier=tier, now_ms=now_ms)
        order.payment = "paid" if payment == "due" and priced.paid == 0 else payment
        if order.payment == "paid":
            order.paid_ms = now_ms

    def _catalog(self, session: Session, store_id: str,
                 lines: tuple[OrderLine, ...]) -> tuple[str, Catalog]:
        try:
            items, meta = store_items(session, store_id)
        except NotFound as err:
            raise Unpriceable("no_price_book", f"no price book reaches store {store_id}") \
                from err
        except Conflict as err:
            raise Unpriceable("currency", err.detail) from err
        skus = sorted({ln.sku for ln in lines})
        missing = [sku for sku in skus if sku not in items]
        if missing:
            raise Unpriceable("unknown_sku", f"not in store {store_id}'s price book: "
                                             f"{', '.join(missing)}")
        currency = str(meta["currency"])
        return currency, Catalog(version=int(meta["version"]), currency=currency,
                                 items={sku: Item.model_validate(items[sku]) for sku in skus})

    def _ruleset(self, session: Session, store_id: str,
                 currency: str) -> tuple[int, Ruleset]:
        publication = latest_publication(session)
        if publication is None:  # nothing published yet: list prices
            return 0, compile(PromotionSnapshot(version=0, currency=currency, promotions=()))
        if publication.currency != currency:
            raise Unpriceable("currency", f"promotions are in {publication.currency}, store "
                                          f"{store_id}'s price book in {currency}")
        _, ruleset = self.repricer.ruleset(publication, store_id, CHANNEL)
        return publication.version, ruleset

    def _member(self, session: Session, member_id: str | None, currency: str, *,
                now_ms: int) -> tuple[Member | None, str | None]:
        if member_id is None:
            return None, None
        if session.get(MemberRow, member_id) is None:
            raise InvalidOrder(f"no member {member_id!r}")
        tier = member_tier(session, member_id, now_ms=now_ms,
                           window_ms=self.program.tier_window_ms)
        return Member(id=member_id, tier=tier, currency=currency), tier

    def _coupons(self, session: Session, codes: tuple[str, ...], *, member_id: str | None,
                 now_ms: int) -> dict[str, str]:
        """Presented code -> the engine code it stands for; member coupons checked."""
        out: dict[str, str] = {}
        for code in codes:
            coupon = session.get(Coupon, code)
            if coupon is None:
                out[code] = code  # a public code: the engine decides
                continue
            campaign = session.get(Campaign, coupon.campaign_id)
            reason = ("inactive" if campaign is None or not campaign.active
                      else "wrong_member" if coupon.member_id != member_id
                      else "expired" if coupon.expires_ms <= now_ms
                      else "redeemed" if is_redeemed(session, code) else None)
            if reason is not None or campaign is None:
                raise Unpriceable("coupon_unusable", f"coupon {code!r}: {reason}")
            out[code] = campaign.engine_code
        return out


def _frozen(priced: PricedBasket, *, coupons: tuple[str, ...], used: list[str], version: int,
            tier: str | None, now_ms: int) -> dict[str, Any]:
    """What the order keeps of the engine's answer (minor units throughout)."""
    by_sku: dict[str, dict[str, int]] = {}
    for ln in priced.lines:
        row = by_sku.setdefault(ln.sku, {"qty": 0, "unit_price": ln.unit_price, "gross": 0,
                                         "discount": 0, "net": 0, "points_earned": 0})
        row["qty"] += ln.qty
        row["gross"] += ln.gross
        row["discount"] += ln.gross - ln.net
        row["net"] += ln.net
        row["points_earned"] += ln.points_earned
    rejected = [c for c in coupons if c not in used]
    return {
        "currency": priced.currency, "subtotal": priced.subtotal, "discount": priced.discount,
        "total": priced.paid, "points_earned": priced.points_earned,
        "lines": [{"sku": sku, **row} for sku, row in sorted(by_sku.items())],
        "applied": [{"promotion_id": a.promotion_id, "kind": a.kind, "amount": a.amount,
                     "points": a.points} for a in priced.applied],
        "coupons_applied": used, "coupons_rejected": rejected, "member_tier": tier,
        "catalog_version": priced.catalog_version, "promotions_version": version,
        "ruleset_hash": priced.ruleset_hash, "engine_version": priced.engine_version,
        "priced_at": now_ms, "channel": CHANNEL,
    }
