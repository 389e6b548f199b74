"""What the cart screen shows and does, per cart, computed on the store box.

The basket is the cart driver's session (barcodes scanned on the cart), priced by the
shared engine (``pricing.price``) with the store's cached catalog and promotion
snapshot, so the screen's total is the till's total to the minor unit. Coupons issued by
the trigger engine are single-use codes from pre-allocated ranges; applying one puts its
range's *engine* code into the basket (the ``pricing.Coupon`` it answers to), and paying
marks the code redeemed in the ledger and reports a ``coupon_redeemed`` event.

A member's coupons show on every cart the member signs into, so applying one *reserves*
it for that cart (decision 0019): another cart applying it is refused "in use on another
cart" until the first removes it, its session ends, or ``reservation_s`` passes (renewed
at checkout). Whatever slips past (a reservation that timed out, the code used at a till
lane) is caught at payment: the sale must price to exactly what the payment QR charged,
else nothing is recorded and the checkout is refused (``StaleCheckout``, counted in
``storefleet_cartscreen_checkout_mismatch``); the shopper checks out again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import qrcode
import qrcode.image.svg
from prometheus_client import Counter
from pydantic import ValidationError

from edge_agent.cartscreen.hub import ScreenHub
from edge_agent.cartscreen.payment import Confirmation, PaymentNotice, QrPayload, verify
from edge_agent.cartscreen.recommend import Recommender
from edge_agent.cartscreen.route import Grid, plan_route
from edge_agent.cartscreen.svgmap import to_svg
from edge_agent.inference.triggers.ledger import CouponLedger, IssuedCoupon
from edge_agent.inference.triggers.service import (
    EventSink,
    MemberProfile,
    Members,
    StaticMembers,
)
from edge_agent.inference.triggers.storemap import Location, StoreMap
from edge_agent.pos.sales import ChargeMismatch, NotReady, PosService, Sale, SaleRefused, Tenders
from pricing import Basket, Catalog, Line, Member, PricingError, Ruleset, Store, price
from protocols.errors import StorefleetError
from protocols.ids import uuid7
from protocols.triggers import TriggerRule

logger = logging.getLogger(__name__)

MAX_LIST = 50  # shopping-list entries per cart
MAX_VERIFIED = 1_000  # members signed in by code, remembered for their screens
# How long an applied coupon stays reserved for its cart without a checkout: a long
# shopping trip; a cart left with the coupon applied frees it for the member's next cart.
RESERVATION_S = 30 * 60.0


class ScreenError(StorefleetError):
    """A cart-screen request that cannot be done (``status`` = HTTP status to answer)."""

    reason = "screen_error"

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class StaleCheckout(ScreenError):
    """The payment QR's amount is no longer what the basket prices at (a coupon on it was
    used elsewhere): nothing recorded, the checkout closed; ``codes`` no longer apply."""

    def __init__(self, detail: str, *, codes: tuple[str, ...] = ()) -> None:
        super().__init__(409, f"the basket's price changed since the payment QR was shown "
                              f"({detail}): nothing was recorded, check out again")
        self.codes = codes


@dataclass(frozen=True, slots=True)
class _Hold:
    """A coupon reserved for the cart it was applied on (``CartScreenBackend._holder``)."""

    cart_id: str
    session_id: str | None
    until_ms: int


@dataclass
class CartView:
    member_override: str | None = None
    session_id: str | None = None
    offered: dict[str, dict[str, Any]] = field(default_factory=dict)  # code -> coupon view
    applied: list[str] = field(default_factory=list)
    shopping_list: list[str] = field(default_factory=list)
    checkout: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    item_events: int = -1


PricingSource = Callable[[], tuple[Catalog, Ruleset] | None]


class CartScreenBackend:
    def __init__(self, *, ctx: EventSink, store_id: str, hub: ScreenHub,
                 pricing: PricingSource, ledger: CouponLedger | None = None,
                 carts: Callable[[], Any] | None = None, members: Members | None = None,
                 store_map: StoreMap | None = None, names_zh: Mapping[str, str] | None = None,
                 co_occurrence: list[tuple[str, str]] | None = None,
                 utc_offset_min: int = 0, till: PosService | None = None,
                 payment_confirmation: Confirmation = "provider",
                 payment_secret: str | None = None,
                 reservation_s: float = RESERVATION_S,
                 rules: Callable[[], Iterable[TriggerRule]] = tuple) -> None:
        self.ctx = ctx
        self.store_id = store_id
        self.hub = hub
        self._pricing = pricing
        self.ledger = ledger
        self._carts = carts
        self.members = members or StaticMembers()
        # With the box's members module (decision 0064): a signed member code scanned on
        # the screen is verified there (``use_member_codes``); the members it signed in,
        # by id, newest last and bounded (a day's shoppers of a store).
        self._member_codes: Callable[[str], Awaitable[MemberProfile]] | None = None
        self._verified: dict[str, MemberProfile] = {}
        self.map = store_map
        self.grid = Grid(store_map) if store_map is not None else None
        self.names_zh = dict(names_zh or {})
        self.recommender = Recommender(co_occurrence or [])
        self.utc_offset_min = utc_offset_min
        self.views: dict[str, CartView] = {}
        self.locations: dict[str, Location] = {}
        self._pushed: dict[str, tuple[float, str | None, str | None]] = {}
        self.till = till  # records checkouts as sales (checkout.cart_till); None: screen only
        self._locks: dict[str, asyncio.Lock] = {}  # one payment confirmation at a time per cart
        self.checkout_mismatches = Counter(
            "storefleet_cartscreen_checkout_mismatch", "cart payments refused because the "
            "basket no longer priced at the payment QR's amount", registry=ctx.registry)
        self._holds: dict[str, _Hold] = {}  # coupon code -> the cart it is reserved for
        self._reservation_ms = int(reservation_s * 1000)
        self.coupons_refused = Counter(
            "storefleet_cartscreen_coupon_refused", "coupons a cart could not apply or "
            "keep, by reason", ["reason"], registry=ctx.registry)
        self.payment_confirmation: Confirmation = payment_confirmation  # payment.py
        self._payment_secret = payment_secret
        # the trigger rules in force (rules.RuleSources.effective): a coupon read back from
        # the ledger is shown with its rule's texts, found by the rule id it was issued by
        self._rules = rules
        self.payment_notices = Counter(
            "storefleet_cartscreen_payment_notices", "payment provider notifications, by "
            "outcome", ["outcome"], registry=ctx.registry)

    # ---- per cart ----------------------------------------------------------------------

    def view(self, cart_id: str) -> CartView:
        view = self.views.get(cart_id)
        session = self._session(cart_id)
        sid = session.session_id if session is not None else None
        if view is None or (sid is not None and view.session_id not in (None, sid)):
            view = self.views[cart_id] = CartView()  # a new shopper: a clean screen
        if sid is not None:
            view.session_id = sid
        return view

    def _session(self, cart_id: str) -> Any:
        driver = self._carts() if self._carts is not None else None
        return driver.session_of(cart_id) if driver is not None else None

    def member_id(self, cart_id: str) -> str | None:
        session = self._session(cart_id)
        if session is not None and session.member_id:
            return str(session.member_id)
        return self.view(cart_id).member_override

    def _profile(self, member_id: str) -> MemberProfile | None:
        return self._verified.get(member_id) or self.members.get(member_id)

    def use_member_codes(self, verify: Callable[[str], Awaitable[MemberProfile]]) -> None:
        """Signed member codes (``SFM2...``) are checked by ``verify`` (the members
        module: ``ScreenError`` 403 with the refusal's reason when not accepted)."""
        self._member_codes = verify

    def member_view(self, cart_id: str) -> dict[str, Any] | None:
        mid = self.member_id(cart_id)
        if mid is None:
            return None
        profile = self._profile(mid)
        return {"member_id": mid, "name": profile.name if profile else mid,
                "tier": profile.tier if profile else None,
                "points": profile.points if profile else 0}

    async def sign_in(self, cart_id: str, qr: str) -> dict[str, Any]:
        """Member QR typed or scanned on the screen: the member's signed code when the
        box runs the members module, else the demo's unsigned ``SFM:{member_id}``."""
        from protocols.cart import member_from_qr
        from protocols.membercode import PREFIX

        qr = qr.strip()
        if self._member_codes is not None and qr.startswith(PREFIX + "."):
            profile = await self._member_codes(qr)
            self._verified.pop(profile.member_id, None)
            self._verified[profile.member_id] = profile
            while len(self._verified) > MAX_VERIFIED:
                self._verified.pop(next(iter(self._verified)))
            self.view(cart_id).member_override = profile.member_id
            return self.member_view(cart_id) or {}
        mid = member_from_qr(qr)
        if mid is None:
            raise ScreenError(400, "not a member QR code")
        self.view(cart_id).member_override = mid
        return self.member_view(cart_id) or {}

    # ---- basket ---------------------------------------------------------------------------

    def items(self, cart_id: str) -> dict[str, int]:
        session = self._session(cart_id)
        return dict(session.items) if session is not None else {}

    def _member(self, cart_id: str, currency: str) -> Member | None:
        mid = self.member_id(cart_id)
        if mid is None:
            return None
        profile = self._profile(mid)
        return Member(id=mid, tier=profile.tier if profile else None, currency=currency,
                      points_balance=profile.points if profile else 0)

    def priced(self, cart_id: str) -> dict[str, Any]:
        view = self.view(cart_id)
        source = self._pricing()
        items = self.items(cart_id)
        if source is None:
            raise ScreenError(503, "no price book yet")
        catalog, ruleset = source
        known = {sku: q for sku, q in sorted(items.items()) if sku in catalog.items}
        engine_codes = tuple(sorted({view.offered[c]["engine_code"] for c in view.applied
                                     if c in view.offered}))
        member = self._member(cart_id, catalog.currency)
        basket = Basket(id=f"cart-{cart_id}", currency=catalog.currency, coupons=engine_codes,
                        lines=tuple(Line(line_id=f"l-{sku}", sku=sku, qty=q)
                                    for sku, q in known.items()))
        try:
            result = price(basket, catalog, ruleset, member, self.ctx.clock.now_ms(),
                           Store(id=self.store_id, currency=catalog.currency,
                                 utc_offset_min=self.utc_offset_min))
        except PricingError as err:
            raise ScreenError(409, f"cannot price the basket: {err}") from err
        lines = []
        for ln in result.lines:
            item = catalog.items[ln.sku]
            lines.append({"sku": ln.sku, "name": item.name,
                          "name_zh": self.names_zh.get(ln.sku, item.name), "qty": ln.qty,
                          "unit_price": ln.unit_price, "gross": ln.gross, "net": ln.net,
                          "discount": ln.gross - ln.net})
        # The codes that gave the discount: one per engine code the engine used (a coupon
        # applies once per basket); only those are redeemed when the basket is paid.
        gave = {view.offered[c]["engine_code"] for c in view.applied
                if c in view.offered} - set(result.rejected_coupons)
        applied_codes = []
        for c in view.applied:
            if c in view.offered and view.offered[c]["engine_code"] in gave:
                gave.discard(view.offered[c]["engine_code"])
                applied_codes.append(c)
        return {"currency": result.currency, "lines": lines, "subtotal": result.subtotal,
                "discount": result.discount, "total": result.total,
                "points_earned": result.points_earned,
                "applied": [{"id": a.promotion_id, "kind": a.kind, "amount": a.amount,
                             "detail": a.detail} for a in result.applied if a.amount],
                "coupons_applied": applied_codes,
                "unknown": sorted(set(items) - set(known)),
                "ruleset_hash": result.ruleset_hash,
                "basket": dict(known)}  # what was priced: the sale records exactly this

    # ---- coupons ----------------------------------------------------------------------------

    def coupon_view(self, c: IssuedCoupon, rule: TriggerRule | None) -> dict[str, Any]:
        """What the screen shows of ``c``: the texts of ``rule``, else of the rule in force
        that issued it (a code read back from the ledger: issued on another cart, in an
        earlier session, before a restart). Only a code whose rule is no longer in force
        is titled by its engine code."""
        if rule is None:
            rule = next((r for r in self._rules() if r.id == c.rule_id), None)
        t = rule.coupon if rule is not None and rule.coupon.engine_code == c.engine_code \
            else None
        return {"code": c.code, "engine_code": c.engine_code, "rule_id": c.rule_id,
                "title": t.title if t else c.engine_code, "title_zh": t.title_zh if t else "",
                "body": t.body if t else "", "body_zh": t.body_zh if t else "",
                "expires_ms": c.expires_ms, "issued_ms": c.issued_ms}

    def on_coupon(self, cart_id: str, coupon: IssuedCoupon, rule: TriggerRule) -> None:
        """From the trigger service, on the trigger path: remember it and push it now."""
        payload = self.coupon_view(coupon, rule)
        self.view(cart_id).offered[coupon.code] = payload
        self.hub.push(cart_id, "coupon", payload)

    async def coupons(self, cart_id: str) -> list[dict[str, Any]]:
        view = self.view(cart_id)
        if self.ledger is not None:
            mid = self.member_id(cart_id)
            rows = await self.ledger.for_member(mid) if mid else []
            if view.session_id:
                rows += await self.ledger.for_session(view.session_id)
            now = self.ctx.clock.now_ms()
            for c in rows:
                if c.usable(now) and c.code not in view.offered:
                    view.offered[c.code] = self.coupon_view(c, None)
        return [dict(v, applied=k in view.applied) for k, v in view.offered.items()]

    async def apply(self, cart_id: str, code: str) -> dict[str, Any]:
        """Put ``code`` in the basket and reserve it for this cart."""
        view = self.view(cart_id)
        await self.coupons(cart_id)  # the member's earlier coupons count too
        if code not in view.offered:
            raise ScreenError(404, "no such coupon for this cart")
        now = self.ctx.clock.now_ms()
        if self.ledger is not None:
            c = await self.ledger.by_code(code)
            if c is None or not c.usable(now):
                raise self._refuse("used", 409, "coupon expired or already used")
        if self.till is not None and await self.till.ledger.code_used(code):
            raise self._refuse("used", 409, "coupon already used")  # at a till lane
        if self._holder(code, now) not in (None, cart_id):
            raise self._refuse("in_use", 409, "coupon in use on another cart")
        engine_code = view.offered[code]["engine_code"]
        if any(view.offered.get(c, {}).get("engine_code") == engine_code
               for c in view.applied if c != code):
            raise self._refuse("same_kind", 409, "a coupon of this kind is already applied")
        if code not in view.applied:
            view.applied.append(code)
        self._reserve(cart_id, code, now)
        return self.priced(cart_id)

    async def remove(self, cart_id: str, code: str) -> dict[str, Any]:
        """Take ``code`` out of the basket: its reservation is released, and a payment QR
        already shown no longer stands (it priced the coupon in)."""
        view = self.view(cart_id)
        if code not in view.applied:
            raise ScreenError(404, "coupon not applied on this cart")
        view.applied.remove(code)
        view.checkout = None
        if (hold := self._holds.get(code)) is not None and hold.cart_id == cart_id:
            del self._holds[code]
        return self.priced(cart_id)

    def _refuse(self, reason: str, status: int, detail: str) -> ScreenError:
        self.coupons_refused.labels(reason=reason).inc()
        logger.info("coupon refused (%s): %s", reason, detail)
        return ScreenError(status, detail)

    def _reserve(self, cart_id: str, code: str, now_ms: int) -> None:
        session = self._session(cart_id)
        self._holds[code] = _Hold(cart_id, session.session_id if session is not None else None,
                                  now_ms + self._reservation_ms)

    def _holder(self, code: str, now_ms: int) -> str | None:
        """The cart ``code`` is reserved for, if the reservation still stands: not timed
        out, the code still applied there, the cart's session the one that applied it."""
        hold = self._holds.get(code)
        if hold is None:
            return None
        view = self.views.get(hold.cart_id)
        session = self._session(hold.cart_id)
        live = (now_ms < hold.until_ms and view is not None and code in view.applied
                and (hold.session_id is None
                     or (session is not None and session.session_id == hold.session_id)))
        if not live:
            del self._holds[code]
            return None
        return hold.cart_id

    # ---- products, map, list -----------------------------------------------------------------

    def product(self, sku: str) -> dict[str, Any] | None:
        source = self._pricing()
        if source is None or sku not in source[0].items:
            return None
        item = source[0].items[sku]
        shelf = self.map.shelf_of_sku(sku) if self.map is not None else None
        return {"sku": sku, "name": item.name, "name_zh": self.names_zh.get(sku, item.name),
                "category": item.category, "price": item.price,
                "currency": source[0].currency, "shelf": shelf.id if shelf else None}

    def search(self, query: str, *, limit: int = 20) -> list[dict[str, Any]]:
        source = self._pricing()
        q = query.strip().lower()
        if source is None or not q:
            return []
        hits = [sku for sku, item in sorted(source[0].items.items())
                if q in sku or q in item.name.lower() or q in self.names_zh.get(sku, "")
                or q in item.category.lower()]
        return [p for p in (self.product(s) for s in hits[:limit]) if p is not None]

    def recommendations(self, cart_id: str, *, limit: int = 4) -> list[dict[str, Any]]:
        source = self._pricing()
        if source is None:
            return []
        skus = self.recommender.suggest(self.items(cart_id), source[0], limit=limit)
        return [p for p in (self.product(s) for s in skus) if p is not None]

    def set_list(self, cart_id: str, skus: list[str]) -> list[str]:
        source = self._pricing()
        known = source[0].items if source is not None else {}
        clean = [s for s in dict.fromkeys(skus) if s in known][:MAX_LIST]
        self.view(cart_id).shopping_list = clean
        return clean

    def on_location(self, cart_id: str, loc: Location) -> None:
        """From the trigger service on every located scan: move the dot, refresh the basket."""
        self.locations[cart_id] = loc
        if not self.hub.watching(cart_id):
            return
        # The dot moves at most once a second unless the zone or shelf changed: a map
        # redrawn at the 5 Hz scan rate looks no better and costs 5x the socket traffic.
        now = self.ctx.clock.monotonic()
        last = self._pushed.get(cart_id)
        if last is not None and last[1:] == (loc.zone, loc.shelf) and now - last[0] < 1.0:
            return
        self._pushed[cart_id] = (now, loc.zone, loc.shelf)
        data: dict[str, Any] = {"zone": loc.zone, "shelf": loc.shelf}
        if self.map is not None:
            data["svg"] = to_svg(self.map, (loc.x, loc.y))
        self.hub.push(cart_id, "position", data)
        session = self._session(cart_id)
        events = session.item_events if session is not None else 0
        view = self.view(cart_id)
        if events != view.item_events:
            view.item_events = events
            self.hub.push(cart_id, "basket", {"item_events": events})

    def route(self, cart_id: str) -> dict[str, Any]:
        if self.map is None or self.grid is None:
            raise ScreenError(404, "no store layout")
        view = self.view(cart_id)
        loc = self.locations.get(cart_id)
        start = (loc.x, loc.y) if loc is not None else self.map.entrance
        stops: dict[str, tuple[float, float]] = {}
        for sku in view.shopping_list:
            shelf = self.map.shelf_of_sku(sku)
            if shelf is not None:
                stops[shelf.id] = shelf.pos
        checkout = next((z for z in self.map.zones if z.id == "checkout"), None)
        end = None if checkout is None else ((checkout.rect[0] + checkout.rect[2]) / 2,
                                             (checkout.rect[1] + checkout.rect[3]) / 2)
        order, line = plan_route(self.grid, start, sorted(stops.items()), end=end)
        return {"order": order, "points": [to_svg(self.map, p) for p in line]}

    # ---- checkout ----------------------------------------------------------------------------

    def checkout(self, cart_id: str) -> dict[str, Any]:
        """The payment QR for the basket as it prices now. Its coupons' reservations are
        renewed for the time it takes to pay; one taken over by another cart after this
        cart's reservation timed out is dropped first, so the QR never counts it."""
        view = self.view(cart_id)
        now = self.ctx.clock.now_ms()
        for code in list(view.applied):
            if self._holder(code, now) not in (None, cart_id):
                view.applied.remove(code)
                self.coupons_refused.labels(reason="in_use").inc()
                logger.warning("cart %s: coupon %s dropped at checkout, in use on cart %s",
                               cart_id, code, self._holder(code, now))
            else:
                self._reserve(cart_id, code, now)
        priced = self.priced(cart_id)
        if not priced["lines"]:
            raise ScreenError(409, "the basket is empty")
        checkout_id = uuid7(self.ctx.clock.now_ms())
        digest = hashlib.sha256(priced["ruleset_hash"].encode() + repr(priced["lines"]).encode())
        # What a payment app scans: store, cart, checkout, amount in minor units, and a
        # digest of the priced basket so the payment matches exactly this basket.
        payload = (f"SFPAY:{self.store_id}:{cart_id}:{checkout_id}:{priced['total']}:"
                   f"{priced['currency']}:{digest.hexdigest()[:16]}")
        img = qrcode.make(payload, image_factory=qrcode.image.svg.SvgPathImage, border=2)
        view.checkout = {"checkout_id": checkout_id, "payload": payload, "priced": priced}
        return {"checkout_id": checkout_id, "total": priced["total"],
                "currency": priced["currency"], "qr_svg": img.to_string(encoding="unicode"),
                "payload": payload}

    async def paid(self, cart_id: str, checkout_id: str) -> dict[str, Any]:
        """The payment provider confirmed ``checkout_id``: record the sale (with a till),
        redeem the coupons, issue the e-receipt. A confirmation delivered again answers
        the same receipt and records nothing more."""
        view = self.view(cart_id)
        async with self._locks.setdefault(cart_id, asyncio.Lock()):
            if view.receipt is not None and view.receipt["receipt_id"] == checkout_id:
                return view.receipt
            if view.checkout is None or view.checkout["checkout_id"] != checkout_id:
                raise ScreenError(404, "no such checkout")
            priced = dict(view.checkout["priced"])
            codes = list(priced["coupons_applied"])
            charged = int(priced["total"])  # the QR's amount: what the shopper paid
            now = self.ctx.clock.now_ms()
            if self.till is not None:
                sale = await self._sell(cart_id, checkout_id, priced, codes, charged)
                redeemed = list(sale.coupons_used)
                priced.update(sale_id=sale.sale_id, paid=sale.priced.paid, charged=sale.charged,
                              **{k: getattr(sale.priced, k) for k in
                                 ("subtotal", "discount", "total", "points_earned")})
                for code in redeemed:  # the sale used them up: the wallet shows them used
                    if self.ledger is not None and not await self.ledger.redeem(code, now_ms=now):
                        self.coupons_refused.labels(reason="ledger_out_of_step").inc()
                        logger.warning("cart %s: coupon %s used by sale %s was not open in "
                                       "the trigger ledger", cart_id, code, sale.sale_id)
            else:
                if self.ledger is not None and not await self.ledger.redeem_all(codes,
                                                                                 now_ms=now):
                    raise self._stale(cart_id, checkout_id, "a coupon was used meanwhile",
                                      tuple(codes))
                redeemed = codes
                priced.update(paid=charged, charged=charged)
                for code in redeemed:
                    await self.ctx.emit_event(
                        "coupon_redeemed", device_id=cart_id,
                        event_id=f"rdm-{checkout_id}-{code}"[:64],
                        data={"source": "range", "code": code, "sale_id": checkout_id,
                              "channel": "cart", "cart_id": cart_id})
            self.recommender.learn(self.items(cart_id))
            view.receipt = {**priced, "receipt_id": checkout_id, "ts": now,
                            "store_id": self.store_id, "cart_id": cart_id,
                            "member": self.member_view(cart_id), "coupons_redeemed": redeemed}
            view.checkout = None
            for code in view.applied:
                if (hold := self._holds.get(code)) is not None and hold.cart_id == cart_id:
                    del self._holds[code]
            view.applied = []
            for code in redeemed:
                view.offered.pop(code, None)
            return view.receipt

    def _stale(self, cart_id: str, checkout_id: str, detail: str,
               codes: tuple[str, ...]) -> StaleCheckout:
        """Close a checkout whose QR no longer matches the basket: counted, logged, the
        codes that stopped applying taken off this cart."""
        self.checkout_mismatches.inc()
        logger.error("cart %s checkout %s refused, nothing recorded: %s (coupons %s)",
                     cart_id, checkout_id, detail, list(codes))
        view = self.view(cart_id)
        view.checkout = None
        for code in codes:
            if code in view.applied:
                view.applied.remove(code)
            view.offered.pop(code, None)
            if (hold := self._holds.get(code)) is not None and hold.cart_id == cart_id:
                del self._holds[code]
        return StaleCheckout(detail, codes=codes)

    async def confirm_by_screen(self, cart_id: str, checkout_id: str) -> dict[str, Any]:
        """The screen's "I have paid" button: only where ``payment_confirmation`` is
        ``"screen"`` (demos, trials); otherwise the provider's notice confirms."""
        if self.payment_confirmation != "screen":
            raise ScreenError(403, "payment is confirmed by the payment provider, not the "
                                   "cart screen")
        return await self.paid(cart_id, checkout_id)

    async def notify(self, body: bytes, signature: str | None) -> dict[str, Any]:
        """A payment provider's notice (``payment.py``): verified, matched to the checkout
        it pays, then the sale is recorded and the e-receipt pushed to the cart's screen."""
        def refuse(outcome: str, status: int, detail: str) -> ScreenError:
            self.payment_notices.labels(outcome=outcome).inc()
            logger.warning("payment notice refused (%s): %s", outcome, detail)
            return ScreenError(status, detail)

        if not self._payment_secret:
            raise refuse("not_configured", 503, "payment notices need payment_secret set")
        if not verify(self._payment_secret, body, signature):
            raise refuse("bad_signature", 401, "bad or missing payment signature")
        try:
            notice = PaymentNotice.model_validate_json(body)
            qr = QrPayload.parse(notice.payload)
        except (ValidationError, ValueError) as err:
            raise refuse("bad_notice", 422, f"bad payment notice: {err}") from err
        if qr.store_id != self.store_id:
            raise refuse("unknown_checkout", 404, f"checkout of another store ({qr.store_id})")
        view = self.view(qr.cart_id)
        if view.receipt is not None and view.receipt["receipt_id"] == qr.checkout_id:
            self.payment_notices.labels(outcome="duplicate").inc()
            return view.receipt
        if view.checkout is None or view.checkout["payload"] != notice.payload:
            raise refuse("unknown_checkout", 404, "no such open checkout")
        if notice.amount != qr.amount or notice.currency != qr.currency:
            raise refuse("amount_mismatch", 409,
                         f"paid {notice.amount} {notice.currency}, the checkout is "
                         f"{qr.amount} {qr.currency}")
        try:
            receipt = await self.paid(qr.cart_id, qr.checkout_id)
        except StaleCheckout as err:
            # Refused, so the gateway reverses the payment; nothing was recorded.
            raise refuse("stale_amount", err.status, err.detail) from err
        self.payment_notices.labels(outcome="confirmed").inc()
        self.hub.push(qr.cart_id, "receipt", receipt)
        return receipt

    async def _sell(self, cart_id: str, checkout_id: str, priced: dict[str, Any],
                    codes: list[str], charged: int) -> Sale:
        assert self.till is not None
        lines = [Line(line_id=f"l-{sku}", sku=sku, qty=qty)
                 for sku, qty in sorted(priced["basket"].items())]
        try:
            return await self.till.sell(
                lines, member=self._member(cart_id, priced["currency"]), coupons=codes,
                tenders=Tenders(method="cart-pay", charged=charged), sale_id=checkout_id,
                till_id=cart_id)  # the sale and its receipt name the cart paid at
        except ChargeMismatch as err:
            raise self._stale(cart_id, checkout_id, str(err),
                              tuple(err.refused_coupons)) from err
        except NotReady as err:
            raise ScreenError(503, f"the till cannot price yet: {err}") from err
        except SaleRefused as err:
            raise ScreenError(409, f"sale not recorded: {err}") from err
