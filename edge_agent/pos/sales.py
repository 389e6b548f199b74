"""The till: ``PosService.sell`` and ``refund``, priced locally, online or offline.

    pos = PosService(store_id="S001", ledger=ledger, promotions=promos, catalog=catalog,
                     ranges=ranges, sink=agent.driver_context, clock=clock,
                     registry=registry, online=lambda: agent.uplink.connected)
    sale = await pos.sell([Line(line_id="1", sku="milk", qty=2)], member=None,
                          coupons=["R7KQ2M9AB-000012"], tenders=Tenders(method="cash",
                                                                     cash_given=1000))
    sale.receipt          # edge_agent.pos.receipt.Receipt (printed when a printer is there)
    back = await pos.refund(sale.sale_id, {"1": 1})   # exact reversal (pricing.refund)

Pricing is ``pricing.price`` over the cached, signature-checked snapshot (``cache``) and
the cached catalog, so cloud, till and cart compute the same total. Each sale is written
to the POS ledger first and then to the agent's durable outbox as a ``sale`` event (id =
sale id) carrying everything the cloud needs to re-price it: snapshot version, engine
version, ruleset hash, the basket, the catalog entries used, member, store, totals and
the per-line allocation (``priced``), and ``charged``: what the tenders collected in
money, which is always ``totals.paid`` (a sale that would record anything else is refused
before it is written: a short cash tender, or ``ChargeMismatch`` when a payment taken
beforehand, a cart's QR, no longer matches the price). Range coupons add
``coupon_redeemed`` events, only for the codes that gave the discount (``pricing``'s
answer, once per coupon); refunds add ``refund`` events. A crash between ledger and
outbox is repaired by ``resume()`` at start (the outbox ignores an id it already holds).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter

from edge_agent.config import StoreSettings
from edge_agent.errors import StorageError
from edge_agent.pos.cache import CacheError, CloudApi
from edge_agent.pos.ledger import PosLedger
from edge_agent.pos.offline import OfflineGuard, OfflineLimits, local_day
from edge_agent.pos.peripherals import PeripheralUnavailable, PosError, PosPeripherals
from edge_agent.pos.receipt import (
    Adjustment,
    MemberPoints,
    Receipt,
    ReceiptLine,
    StoreHeader,
    Tender,
    Totals,
    mask_id,
)
from pricing import (
    Basket,
    Catalog,
    Line,
    Member,
    PricedBasket,
    PricingError,
    PromotionSnapshot,
    RefundResult,
    Ruleset,
    Store,
    price,
    refund,
)
from protocols.clock import Clock
from protocols.ids import uuid7

logger = logging.getLogger(__name__)


class NotReady(PosError):
    """No promotion snapshot or catalog cached yet: the till cannot price."""


class SaleRefused(PosError):
    """A sale or refund the till will not make (``reason``, ``detail``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ChargeMismatch(SaleRefused):
    """The basket prices at ``priced`` but the shopper's payment already charged
    ``charged`` (a cart's payment QR shown before a coupon was used elsewhere): the sale
    would not record what was charged, so nothing is recorded. ``refused_coupons``: the
    codes that no longer applied, and why."""

    def __init__(self, *, charged: int, priced: int, refused_coupons: Mapping[str, str]
                 ) -> None:
        super().__init__("charge_mismatch", f"the payment charged {charged}, the basket "
                                            f"now prices at {priced}")
        self.charged = charged
        self.priced = priced
        self.refused_coupons = dict(refused_coupons)


class Rulesets(Protocol):
    """Where the till's promotions come from (``PromotionCache``; the cart screen passes
    its own source with the same answer it prices the screen with)."""

    def ruleset(self, channel: str = "pos") -> tuple[PromotionSnapshot, Ruleset] | None: ...


class CatalogSource(Protocol):
    @property
    def catalog(self) -> Catalog | None: ...


class RangeLookup(Protocol):
    def lookup(self, code: str, *, now_ms: int) -> dict[str, Any] | None: ...


class SpendAuthority(Protocol):
    """The member's points and stored value a sale pays with, authorised once the sale is
    priced (by the cloud, or the box's members module offline: ``edge_agent.till``) and
    given back when the sale is then not recorded (decision 0068)."""

    async def authorise(self, priced: PricedBasket) -> dict[str, str]:
        """unit -> spend id for what ``priced`` uses; refuses by raising."""
        ...

    async def release(self, spends: Mapping[str, str]) -> None: ...


class EventSink(Protocol):
    """The agent's outbox door (``AgentDriverContext`` / ``FakeContext`` satisfy it)."""

    async def emit_event(self, kind: str, *, device_id: str, data: Mapping[str, Any],
                         event_id: str | None = None) -> str: ...


@dataclass(frozen=True, slots=True)
class Tenders:
    points: int = 0  # points the shopper wants to pay with
    stored_value: int = 0  # stored value (minor units) the shopper wants to use
    method: str = "card"  # how the rest is paid: card | cash
    cash_given: int | None = None  # for change
    # What a payment already collected before the sale is recorded (a cart's payment QR):
    # the sale must price to exactly this, else it is refused (ChargeMismatch).
    charged: int | None = None


@dataclass(frozen=True, slots=True)
class Sale:
    sale_id: str
    receipt: Receipt
    priced: PricedBasket
    offline: bool
    printed: bool
    capped: tuple[str, ...] = ()  # offline caps that reduced the requested spending
    refused_coupons: dict[str, str] = field(default_factory=dict)  # code -> reason
    coupons_used: tuple[str, ...] = ()  # the codes that gave the discount, in order given
    charged: int = 0  # what the tenders collected in money, change excluded


@dataclass(frozen=True, slots=True)
class _Presented:
    """A coupon code as the till resolved it: its engine code, and its range when it is
    a pre-allocated single-use code (used up in ``pos_used_codes`` only if it applied)."""

    code: str
    engine_code: str
    range: dict[str, Any] | None = None


class PosMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sales = Counter("storefleet_pos_sales", "sales made at the till", ["mode"],
                             registry=registry)
        self.refunds = Counter("storefleet_pos_refunds", "refunds made at the till",
                               registry=registry)
        self.refused = Counter("storefleet_pos_refused",
                               "sales, refunds and coupons the till refused", ["reason"],
                               registry=registry)
        self.capped = Counter("storefleet_pos_offline_capped",
                              "offline sales whose points/stored value a daily cap reduced",
                              ["what"], registry=registry)
        self.print_failures = Counter("storefleet_pos_print_failures",
                                      "receipts or tickets that could not be printed",
                                      ["what"], registry=registry)


class PosService:
    def __init__(
        self,
        *,
        store_id: str,
        ledger: PosLedger,
        promotions: Rulesets,
        catalog: CatalogSource,
        ranges: RangeLookup,
        sink: EventSink,
        clock: Clock,
        metrics: PosMetrics,
        online: Callable[[], bool],
        api: CloudApi | None = None,
        peripherals: Callable[[], PosPeripherals | None] = lambda: None,
        limits: OfflineLimits | None = None,
        currency: str = "EUR",
        utc_offset_min: int = 0,
        till_id: str = "pos",
        channel: str = "pos",  # the snapshot channel priced with and reported (pos | cart)
        store_info: StoreSettings | None = None,  # name, address, tax id, tz on receipts
    ) -> None:
        self.store_id = store_id
        self.ledger = ledger
        self.promotions = promotions
        self.catalog = catalog
        self.ranges = ranges
        self._sink = sink
        self._clock = clock
        self.metrics = metrics
        self._online = online
        self._api = api
        self._peripherals = peripherals
        self.guard = OfflineGuard(ledger, limits=limits or OfflineLimits())
        self.store = Store(id=store_id, currency=currency, utc_offset_min=utc_offset_min)
        self.till_id = till_id
        self.channel = channel
        self.store_info = store_info or StoreSettings()
        self._selling = 0

    # ---- selling -----------------------------------------------------------------------

    def price_basket(self, basket: Basket, member: Member | None, now_ms: int) -> PricedBasket:
        """The POS pricing path (also what the golden corpus is replayed through)."""
        cached = self.promotions.ruleset(self.channel)
        if cached is None or self.catalog.catalog is None:
            raise NotReady("no promotion snapshot or catalog cached yet")
        return price(basket, self.catalog.catalog, cached[1], member, now_ms, self.store)

    @property
    def selling(self) -> int:
        """Sales being recorded right now: an agent update waits for them (decision 0043)."""
        return self._selling

    async def sell(self, lines: Sequence[Line], *, member: Member | None = None,
                   coupons: Sequence[str] = (), tenders: Tenders = Tenders(),
                   sale_id: str | None = None, cashier: str | None = None,
                   till_id: str | None = None, spends: SpendAuthority | None = None,
                   order_id: str | None = None) -> Sale:
        """``sale_id``: the caller's idempotency key (a cart checkout id); a sale already
        recorded under it is refused as ``duplicate``. ``cashier``: who rang it up (id or
        name), printed on the receipt. ``till_id``: where it was sold when this service
        records for several points of sale (the carts: the cart's id), named in the sale
        and on the receipt; the events still come from the service's ``till_id``.
        ``spends``: authorises the member's points / stored value once the sale is
        priced, for exactly what it uses (``edge_agent.till``): the spends are named in
        the sale so the cloud does not take them again, the till's offline guard does
        not cap them again, and a sale not recorded after all gives them back.
        ``order_id``: the online order this sale collects the money for (decision 0069):
        named in the sale, so the cloud does not take the order's units a second time."""
        self._selling += 1
        try:
            return await self._sell(lines, member=member, coupons=coupons, tenders=tenders,
                                    sale_id=sale_id, cashier=cashier, till_id=till_id,
                                    authority=spends, order_id=order_id)
        finally:
            self._selling -= 1

    async def _sell(self, lines: Sequence[Line], *, member: Member | None,
                    coupons: Sequence[str], tenders: Tenders, sale_id: str | None,
                    cashier: str | None, till_id: str | None,
                    authority: SpendAuthority | None, order_id: str | None) -> Sale:
        if not lines:
            self.metrics.refused.labels(reason="empty").inc()
            raise SaleRefused("empty", "a sale needs at least one line")
        till_id = till_id or self.till_id
        now = self._clock.now_ms()
        offline = not self._online()
        if sale_id is not None and await self.ledger.sale(sale_id) is not None:
            self.metrics.refused.labels(reason="duplicate").inc()
            raise SaleRefused("duplicate", f"sale {sale_id!r} is already recorded")
        sale_id = sale_id or uuid7(now)
        day = local_day(now, self.store.utc_offset_min)
        presented, refused = await self._coupons(
            coupons, sale_id=sale_id, member=member, offline=offline, now_ms=now)
        points, stored_value = tenders.points, tenders.stored_value
        capped: tuple[str, ...] = ()
        if member is None:
            points = stored_value = 0
        elif offline and authority is None:
            allow = await self.guard.allowance(member.id, points=points,
                                               stored_value=stored_value, day=day)
            points, stored_value, capped = allow.points, allow.stored_value, allow.capped
            for what in capped:
                self.metrics.capped.labels(what=what).inc()
        basket = Basket(id=sale_id, currency=self.store.currency, lines=tuple(lines),
                        coupons=tuple(c.engine_code for c in presented), points_to_redeem=points,
                        stored_value_to_use=stored_value)
        try:
            priced = self.price_basket(basket, member, now)
        except PricingError as err:
            self.metrics.refused.labels(reason="unpriceable").inc()
            raise SaleRefused("unpriceable", str(err)) from err
        used = self._applied(presented, priced, refused)
        charged = self._charged(priced, tenders, refused)
        # Authorised last, for exactly what the priced sale uses: a refusal before this
        # point spent nothing.
        spends = await authority.authorise(priced) if authority is not None else {}
        range_used = [(c.code, c.range) for c in used if c.range is not None]
        events = self._events(sale_id, basket, member, priced, range_used, offline=offline,
                              now_ms=now, coupons=list(coupons), charged=charged,
                              coupons_used=[c.code for c in used], till_id=till_id,
                              spends=spends, order_id=order_id)
        try:
            await self.ledger.record_sale(sale_id, ts=now, member_id=member.id if member else None,
                                          priced=priced.to_json(), events=events,
                                          codes=[code for code, _ in range_used])
        except StorageError as err:
            # Most likely a range code used by a concurrent sale at another lane.
            self.metrics.refused.labels(reason="ledger").inc()
            if spends:
                assert authority is not None  # only an authority makes spends
                await authority.release(spends)
            raise SaleRefused("ledger", err.detail) from err
        if offline and member is not None and authority is None:
            await self.guard.record(member.id, points=priced.points_used,
                                    stored_value=priced.stored_value, day=day)
        await self._emit(sale_id, events)
        self.metrics.sales.labels(mode="offline" if offline else "online").inc()
        receipt = self._receipt(sale_id, priced, tenders, now_ms=now, offline=offline,
                                member=member, cashier=cashier, till_id=till_id,
                                sale_number=await self.ledger.sale_number(sale_id))
        printed = await self._print(receipt)
        return Sale(sale_id, receipt, priced, offline, printed, capped, refused,
                    coupons_used=tuple(c.code for c in used), charged=charged)

    async def _coupons(self, codes: Sequence[str], *, sale_id: str, member: Member | None,
                       offline: bool, now_ms: int) -> tuple[list[_Presented], dict[str, str]]:
        cached = self.promotions.ruleset(self.channel)
        public = {getattr(p, "code", None) for p in cached[0].promotions} if cached else set()
        presented: list[_Presented] = []
        refused: dict[str, str] = {}
        for code in dict.fromkeys(codes):  # the same code twice counts once
            if code in public:
                presented.append(_Presented(code, code))
            elif (rng := self.ranges.lookup(code, now_ms=now_ms)) is not None:
                if await self.ledger.code_used(code):
                    refused[code] = "already_used"
                else:
                    presented.append(_Presented(code, str(rng["engine_code"]), rng))
            elif offline or self._api is None:
                refused[code] = "needs_cloud"
            else:
                try:
                    doc = await self._api.request(
                        "POST", f"/api/v1/coupons/{code}/redeem",
                        json_body={"store_id": self.store_id, "sale_id": sale_id,
                                   "member_id": member.id if member else None})
                    presented.append(_Presented(code, str(doc["engine_code"])))
                except (CacheError, KeyError, TypeError) as err:
                    refused[code] = "refused_by_cloud"
                    logger.info("coupon %s refused: %s", code, err)
        for reason in refused.values():
            self.metrics.refused.labels(reason=f"coupon_{reason}").inc()
        return presented, refused

    def _applied(self, presented: list[_Presented], priced: PricedBasket,
                 refused: dict[str, str]) -> list[_Presented]:
        """The codes that gave the discount, by the engine's answer: an engine code it
        used counts once (a coupon applies once per basket), so of two codes for one
        coupon the first given is used and the other stays with the shopper, like a code
        whose coupon gave nothing. Those are added to ``refused`` as ``not_applied``."""
        gave = {c.engine_code for c in presented} - set(priced.rejected_coupons)
        used: list[_Presented] = []
        for c in presented:
            if c.engine_code in gave:
                gave.discard(c.engine_code)
                used.append(c)
            else:
                refused[c.code] = "not_applied"
                self.metrics.refused.labels(reason="coupon_not_applied").inc()
        return used

    def _charged(self, priced: PricedBasket, tenders: Tenders,
                 refused: Mapping[str, str]) -> int:
        """What the tenders collect in money (change excluded): ``priced.paid``, checked
        against a payment already taken (``ChargeMismatch``) and a short cash tender."""
        if tenders.charged is not None and tenders.charged != priced.paid:
            self.metrics.refused.labels(reason="charge_mismatch").inc()
            raise ChargeMismatch(charged=tenders.charged, priced=priced.paid,
                                 refused_coupons=refused)
        if (tenders.method == "cash" and tenders.cash_given is not None
                and tenders.cash_given < priced.paid):
            self.metrics.refused.labels(reason="short_tender").inc()
            raise SaleRefused("short_tender", f"cash given {tenders.cash_given} is less "
                                              f"than the {priced.paid} to pay")
        return priced.paid

    def _events(self, sale_id: str, basket: Basket, member: Member | None,
                priced: PricedBasket, range_used: list[tuple[str, dict[str, Any]]], *,
                offline: bool, now_ms: int, coupons: list[str],
                coupons_used: list[str], charged: int, till_id: str,
                spends: dict[str, str], order_id: str | None
                ) -> list[tuple[str, str, dict[str, Any]]]:
        cached = self.promotions.ruleset(self.channel)
        assert cached is not None and self.catalog.catalog is not None  # priced just now
        snapshot = cached[0]
        catalog = self.catalog.catalog
        # Only the items of this basket: the pricing inputs the cloud needs, not the
        # whole price book (which would blow the payload cap).
        used = Catalog(version=catalog.version, currency=catalog.currency,
                       items={ln.sku: catalog.items[ln.sku] for ln in basket.lines})
        totals = {k: getattr(priced, k) for k in ("subtotal", "discount", "total", "paid",
                                                  "points_earned", "points_used",
                                                  "stored_value")}
        sale = {
            "member_id": member.id if member else None, "channel": self.channel,
            "till_id": till_id, "snapshot_version": snapshot.version,
            "engine_version": priced.engine_version, "ruleset_hash": snapshot.ruleset_hash(),
            "priced_at": now_ms, "basket": basket.model_dump(mode="json"),
            "catalog": used.model_dump(mode="json"),
            "member": member.model_dump(mode="json") if member else None,
            "store": self.store.model_dump(mode="json"), "totals": totals,
            "priced": priced.to_dict(), "offline": offline,
            "points_pending": offline and priced.points_earned > 0,
            "coupons": coupons, "coupons_used": coupons_used,
            # minor units the tenders collected in money, change excluded: the cloud's
            # audit flags a sale whose charged differs from totals.paid
            "charged": charged,
            # unit -> spend id of points / stored value the member module authorised
            "spends": spends,
        }
        if order_id is not None:  # the online order collected (decision 0069)
            sale["order_id"] = order_id
        events = [("sale", sale_id, sale)]
        for n, (code, rng) in enumerate(range_used, start=1):
            events.append(("coupon_redeemed", f"{sale_id}-c{n}", {
                "source": "range", "code": code, "range_id": rng["range_id"],
                "engine_code": rng["engine_code"], "sale_id": sale_id, "offline": offline}))
        return events

    async def _emit(self, sale_id: str, events: list[tuple[str, str, dict[str, Any]]]) -> None:
        for kind, event_id, data in events:
            await self._sink.emit_event(kind, device_id=self.till_id, data=data,
                                        event_id=event_id)
        await self.ledger.mark_emitted(sale_id)

    async def resume(self) -> int:
        """Emit the events of sales a crash left between ledger and outbox."""
        pending = await self.ledger.pending_sales()
        for sale_id, events in pending:
            await self._emit(sale_id, events)
        if pending:
            logger.warning("re-emitted %d sales left pending by a crash", len(pending))
        return len(pending)

    # ---- refunds -------------------------------------------------------------------------

    async def refund(self, sale_id: str, lines: Mapping[str, int] | None = None
                     ) -> RefundResult:
        """Return ``lines`` (line id -> units; None = everything not yet returned)."""
        stored = await self.ledger.sale(sale_id)
        if stored is None:
            self.metrics.refused.labels(reason="unknown_sale").inc()
            raise SaleRefused("unknown_sale", f"no sale {sale_id!r} at this store")
        priced = PricedBasket.from_json(stored[0])
        before = await self.ledger.returned(sale_id)
        wanted = dict(lines) if lines is not None else {
            ln.line_id: ln.qty - before.get(ln.line_id, 0) for ln in priced.lines
            if ln.qty > before.get(ln.line_id, 0)}
        try:
            result = refund(priced, wanted, already_returned=before)
        except PricingError as err:
            self.metrics.refused.labels(reason="bad_refund").inc()
            raise SaleRefused("bad_refund", str(err)) from err
        now = self._clock.now_ms()
        refund_id = uuid7(now)
        data = {"sale_id": sale_id, "member_id": stored[1], "refund_id": refund_id,
                "points_reversed": result.points_reversed,
                "points_returned": result.points_returned,
                "stored_value": result.stored_value, "amount": result.amount,
                "paid": result.paid, "refund": result.to_dict(),
                "offline": not self._online()}
        # The event first (idempotent by id), then the local record: a crash between them
        # leaves the return unrecorded here but never lost for the cloud's ledger.
        await self._sink.emit_event("refund", device_id=self.till_id, data=data,
                                    event_id=refund_id)
        await self.ledger.record_return(refund_id, sale_id, wanted, ts=now)
        self.metrics.refunds.inc()
        return result

    # ---- receipts --------------------------------------------------------------------------

    def _receipt(self, sale_id: str, priced: PricedBasket, tenders: Tenders, *, now_ms: int,
                 offline: bool, till_id: str, member: Member | None = None,
                 cashier: str | None = None,
                 sale_number: int | None = None) -> Receipt:
        catalog = self.catalog.catalog
        # Only this sale's skus: a store's book may hold a million (decision 0047).
        skus = {ln.sku for ln in priced.lines}
        names = {sku: catalog.items[sku].name or sku for sku in skus
                 if sku in catalog.items} if catalog else {}
        by_promo: dict[str, int] = {}
        for ln in priced.lines:
            for a in ln.discounts:
                by_promo[a.promotion_id] = by_promo.get(a.promotion_id, 0) + a.amount
        pay: list[Tender] = []
        if priced.stored_value:
            pay.append(Tender(method="stored_value", amount=priced.stored_value))
        if priced.points_value:
            pay.append(Tender(method="points", amount=priced.points_value))
        change = 0
        if tenders.method == "cash" and tenders.cash_given is not None:
            change = max(0, tenders.cash_given - priced.paid)
            pay.append(Tender(method="cash", amount=max(tenders.cash_given, priced.paid)))
        else:
            pay.append(Tender(method=tenders.method[:24] or "card", amount=priced.paid))
        footer = ["Offline sale: points will be credited later"] if offline and \
            priced.points_earned else []
        info = self.store_info
        tz = (ZoneInfo(info.time_zone) if info.time_zone else
              timezone(timedelta(minutes=self.store.utc_offset_min)))
        points = None
        if member is not None:
            # The balance is known only when the caller looked it up (a Member built with
            # just an id defaults it to 0, which would print a false balance). Offline the
            # cloud credits the points later: the receipt says "pending".
            known = "points_balance" in member.model_fields_set and not offline
            points = MemberPoints(
                masked_id=mask_id(member.id), points_earned=priced.points_earned,
                points_used=priced.points_used, pending=offline,
                balance=(member.points_balance - priced.points_used + priced.points_earned)
                if known else None)
        return Receipt(
            receipt_id=sale_id, ts_ms=now_ms,
            store=StoreHeader(
                name=(info.name or f"Store {self.store_id}")[:80],
                address=[line[:80] for line in info.address],
                tax_line=f"{info.tax_id_label} {info.tax_id}"[:80] if info.tax_id else None),
            issued_at=(datetime(1970, 1, 1, tzinfo=UTC)
                       + timedelta(milliseconds=now_ms)).astimezone(tz),
            till_id=till_id[:40], cashier=cashier[:40] if cashier else None,
            sale_number=sale_number, member=points,
            lines=[ReceiptLine(name=names.get(ln.sku, ln.sku)[:80], qty=ln.qty,
                               unit_price=ln.unit_price, amount=ln.gross)
                   for ln in priced.lines],
            adjustments=[Adjustment(label=self._discount_label(pid), amount=-amount)
                         for pid, amount in sorted(by_promo.items()) if amount],
            totals=Totals(subtotal=priced.subtotal, total=priced.total),
            currency=priced.currency, tenders=pay, change=change, barcode=sale_id[-20:],
            footer=footer)

    def _discount_label(self, promotion_id: str) -> str:
        """The promotion's name as the shopper saw it advertised; coupons say so."""
        cached = self.promotions.ruleset(self.channel)
        promo = next((p for p in cached[0].promotions if p.id == promotion_id), None) \
            if cached else None
        name = (promo.name if promo is not None else "") or promotion_id
        if getattr(promo, "kind", None) == "coupon":
            name = f"Coupon {name}"
        return name[:40]

    async def _print(self, receipt: Receipt) -> bool:
        peripherals = self._peripherals()
        if peripherals is None or peripherals.printer is None:
            return False
        try:
            await peripherals.print_receipt(receipt)
        except PeripheralUnavailable as err:
            # The sale stands; the shopper can get a reprint. Counted for the dashboard.
            self.metrics.print_failures.labels(what="receipt").inc()
            logger.warning("receipt %s not printed: %s", receipt.receipt_id, err)
            return False
        return True
