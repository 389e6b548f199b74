"""``LaneTills``: what the lane terminals do, on the till's engine, ledger and outbox.

    lanes = LaneTills(settings, pos=pos_runtime, sink=kernel.sink, clock=kernel.clock,
                      online=kernel.online, members=CloudMembers(...),
                      printers=lambda device_id: ..., registry=kernel.registry)
    lane = lanes.lane_for_token(token)            # None: 401
    basket = await lanes.open(lane)
    await lanes.scan(lane, basket["basket_id"], "milk", qty=2)
    await lanes.set_member(lane, basket_id, MemberRef(member_id="M0004"))
    await lanes.add_coupon(lane, basket_id, "CMP-welcome")
    await lanes.set_tender(lane, basket_id, TenderIn(method="cash", cash_given=2000))
    sale = await lanes.complete(lane, basket_id, cashier="Anna")   # receipt, printed
    sale = await lanes.sell(lane, SaleIn(lines=[...], tender=...))  # all in one call
    await lanes.refund(lane, sale["sale_id"], {"1": 1})

Every lane sells through its own ``PosService`` built on the till's shared parts (ledger,
signed snapshot, catalog, coupon ranges, offline caps, metrics, cloud API) so a lane's
sale is the till's sale: the same pricing, the same ledger-then-outbox write (a ``sale``
event from the till's device ``pos``, naming the lane as ``till_id``), the same offline
rules. The one difference is the printer: each lane prints on the printer it names.

Errors: ``LaneError`` (``status``, ``reason``, ``detail``), raised for every refusal;
the API answers it as it is. ``SaleRefused`` / ``NotReady`` / ``MemberError`` from the
till are converted here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.drivers.capabilities import ReceiptPrinter
from edge_agent.pos.peripherals import PosError, PosPeripherals
from edge_agent.pos.runtime import PosRuntime
from edge_agent.pos.sales import EventSink, NotReady, PosService, SaleRefused, Tenders
from edge_agent.till.baskets import (
    MAX_COUPONS,
    MAX_LINES,
    MAX_QTY,
    CompletedSales,
    OpenBasket,
)
from edge_agent.till.members import (
    MemberDirectory,
    MemberError,
    MemberRef,
    SpendError,
    Unit,
)
from edge_agent.till.settings import LaneSettings, LanesSettings
from pricing import Basket, PricedBasket, PricingError
from protocols.clock import Clock
from protocols.ids import Id, uuid7
from protocols.orders import FINAL_STATES

logger = logging.getLogger(__name__)

# What a till refusal answers over HTTP: the request was understood and cannot be done
# in this state (409), or names something that is not there (404).
_STATUS = {"unknown_sale": 404, "charge_mismatch": 409}


class LaneError(PosError):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


class TenderIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["cash", "card"]
    cash_given: int | None = Field(default=None, ge=0, le=10**10)  # minor units, cash only
    points: int = Field(default=0, ge=0, le=10**9)  # points the member pays with
    stored_value: int = Field(default=0, ge=0, le=10**10)  # minor units of stored value


class SaleLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Id = Field(description="the scanned code: the catalog's sku")
    qty: int = Field(default=1, ge=1, le=MAX_QTY)


class SaleIn(BaseModel):
    """A whole sale in one request, for a lane terminal that rings the basket up itself
    (``POST /till/v1/sales``): the same checks, pricing and recording as a basket
    opened, scanned, tendered and completed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sale_id: Id | None = Field(default=None, max_length=40, description=(
        "the terminal's id for the sale: sent again after a lost answer, the same sale "
        "comes back (never a second one); none: the till makes one"))
    lines: list[SaleLineIn] = Field(default_factory=list, max_length=MAX_LINES, description=(
        "what is sold (besides the order's lines, with order_id)"))
    order_id: Id | None = Field(default=None, description=(
        "a pickup order to be paid here: its lines are sold, and it is handed over"))
    member: MemberRef | None = None
    coupons: list[Id] = Field(default_factory=list, max_length=MAX_COUPONS)
    tender: TenderIn
    cashier: str | None = Field(default=None, max_length=40, description="on the receipt")

    @model_validator(mode="after")
    def _lines_or_order(self) -> SaleIn:
        if not self.lines and self.order_id is None:
            raise ValueError("a sale needs lines or an order_id")
        return self


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: Id


class LanesMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.unauthorized = Counter("storefleet_lanes_unauthorized",
                                    "lane requests refused for a missing or wrong token",
                                    ["why"], registry=registry)
        self.refused = Counter("storefleet_lanes_refused",
                               "lane requests refused (bad request, state, till)",
                               ["reason"], registry=registry)
        self.sales = Counter("storefleet_lanes_sales", "sales completed at a lane", ["lane"],
                             registry=registry)
        self.refunds = Counter("storefleet_lanes_refunds", "refunds made at a lane", ["lane"],
                               registry=registry)
        self.open_baskets = Gauge("storefleet_lanes_open_baskets",
                                  "baskets open at the lanes", registry=registry)
        self.printer_missing = Counter("storefleet_lanes_printer_missing",
                                       "receipts not printed: the lane's printer is not "
                                       "running", ["lane"], registry=registry)
        self.orders = Counter("storefleet_lanes_orders", "pickup orders paid at a lane, by "
                              "result (handed_over, or not_handed_over: sold, but the "
                              "order could not be moved on)", ["result"], registry=registry)


class BasketSpends:
    """A basket's ``SpendAuthority``: the member's points and stored value authorised for
    what the priced sale uses, all or nothing, and given back if the sale is then not
    recorded (decision 0068). Each attempt draws new spend ids: a released id is never
    authorised again, and a sale already recorded is refused (``duplicate``) before
    anything is authorised, so a repeated complete cannot spend twice."""

    def __init__(self, members: MemberDirectory, member_id: str, sale_id: str, *,
                 now_ms: Callable[[], int], refuse: Callable[[int, str, str], LaneError]
                 ) -> None:
        self._members, self._member_id, self._sale_id = members, member_id, sale_id
        self._now_ms, self._refuse = now_ms, refuse

    async def authorise(self, priced: PricedBasket) -> dict[str, str]:
        spends: dict[str, str] = {}
        wanted: tuple[tuple[Unit, int], ...] = (("points", priced.points_used),
                                                ("stored_value", priced.stored_value))
        for unit, amount in wanted:
            if amount <= 0:
                continue
            try:
                spend_id = await self._members.authorise(
                    self._member_id, unit=unit, amount=amount, spend_id=uuid7(self._now_ms()),
                    sale_id=self._sale_id)
            except SpendError as err:
                await self.release(spends)  # all or nothing: the points, not the rest
                raise self._refuse(409, err.reason, f"{unit}: {err.detail}") from err
            if spend_id is not None:
                spends[unit] = spend_id
        return spends

    async def release(self, spends: Mapping[str, str]) -> None:
        for spend_id in spends.values():
            await self._members.release(spend_id)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class LaneTills:
    def __init__(self, settings: LanesSettings, *, pos: PosRuntime, sink: EventSink,
                 clock: Clock, online: Callable[[], bool], members: MemberDirectory,
                 printers: Callable[[str], ReceiptPrinter | None],
                 registry: CollectorRegistry) -> None:
        self.settings = settings
        self.pos = pos
        self._clock = clock
        self._members = members
        self._printers = printers
        self.metrics = LanesMetrics(registry)
        # A lane is known by its token: compared as sha256 digests, so the lookup's
        # timing says nothing about the token's characters.
        self._by_token = {_digest(lane.token.get_secret_value()): lane
                          for lane in settings.lane}
        base = pos.service
        self._services = {lane.id: PosService(
            store_id=base.store_id, ledger=pos.ledger, promotions=pos.promotions,
            catalog=pos.catalog, ranges=pos.ranges, sink=sink, clock=clock,
            metrics=base.metrics, online=online, api=pos.api,
            peripherals=self._peripherals(lane), limits=base.guard.limits,
            currency=base.store.currency, utc_offset_min=base.store.utc_offset_min,
            store_info=base.store_info) for lane in settings.lane}
        self._baskets: dict[str, OpenBasket] = {}
        self._completed = {lane.id: CompletedSales(settings.remember_completed)
                           for lane in settings.lane}

    # ---- lanes ---------------------------------------------------------------------------

    def lane_for_token(self, token: str | None) -> LaneSettings | None:
        if not token:
            self.metrics.unauthorized.labels(why="missing").inc()
            return None
        lane = self._by_token.get(_digest(token))
        if lane is None:
            self.metrics.unauthorized.labels(why="wrong").inc()
        return lane

    @property
    def selling(self) -> int:
        """Sales being recorded at the lanes now (an agent update waits for them)."""
        return sum(s.selling for s in self._services.values())

    def _peripherals(self, lane: LaneSettings) -> Callable[[], PosPeripherals | None]:
        def find() -> PosPeripherals | None:
            if lane.printer is None:
                return None
            printer = self._printers(lane.printer)
            if printer is None:
                self.metrics.printer_missing.labels(lane=lane.id).inc()
                logger.warning("lane %s: printer %s is not running; receipt not printed",
                               lane.id, lane.printer)
                return None
            return PosPeripherals(printer=printer)

        return find

    def refuse(self, status: int, reason: str, detail: str) -> LaneError:
        self.metrics.refused.labels(reason=reason).inc()
        logger.info("lane request refused: %s (%s)", reason, detail)
        return LaneError(status, reason, detail)

    # ---- baskets -------------------------------------------------------------------------

    async def open(self, lane: LaneSettings) -> dict[str, Any]:
        mine = sum(1 for b in self._baskets.values() if b.lane_id == lane.id)
        if mine >= self.settings.max_open_baskets:
            raise self.refuse(409, "too_many_baskets",
                              f"lane {lane.id} has {mine} open baskets: complete or void one")
        now = self._clock.now_ms()
        basket = OpenBasket(basket_id=uuid7(now), lane_id=lane.id, opened_ms=now)
        self._baskets[basket.basket_id] = basket
        self.metrics.open_baskets.set(len(self._baskets))
        return self._view(basket)

    def _basket(self, lane: LaneSettings, basket_id: str) -> OpenBasket:
        basket = self._baskets.get(basket_id)
        if basket is None or basket.lane_id != lane.id:  # another lane's is not there
            if self._completed[lane.id].get(basket_id) is not None:
                raise self.refuse(409, "completed", f"basket {basket_id} is completed")
            raise self.refuse(404, "unknown_basket", f"no open basket {basket_id!r}")
        return basket

    async def view(self, lane: LaneSettings, basket_id: str) -> dict[str, Any]:
        return self._view(self._basket(lane, basket_id))

    async def scan(self, lane: LaneSettings, basket_id: str, code: str, qty: int = 1
                   ) -> dict[str, Any]:
        basket = self._mutable(lane, basket_id)
        catalog = self.pos.catalog.catalog
        if catalog is None:
            raise self.refuse(503, "not_ready", "no catalog cached yet")
        if code not in catalog.items:
            raise self.refuse(404, "unknown_item", f"no item with scan code {code!r}")
        line = basket.lines.get(code)
        if line is None and len(basket.lines) >= MAX_LINES:
            raise self.refuse(409, "too_many_lines", f"a basket holds {MAX_LINES} lines")
        if (line.qty if line else 0) + qty > MAX_QTY:
            raise self.refuse(409, "too_many_units", f"a line holds {MAX_QTY} units")
        basket.add(code, qty)
        return self._view(basket)

    async def remove(self, lane: LaneSettings, basket_id: str, code: str, qty: int | None
                     ) -> dict[str, Any]:
        basket = self._mutable(lane, basket_id)
        if code not in basket.lines:
            raise self.refuse(404, "not_in_basket", f"{code!r} is not in the basket")
        basket.remove(code, qty)
        return self._view(basket)

    async def set_member(self, lane: LaneSettings, basket_id: str, ref: MemberRef
                         ) -> dict[str, Any]:
        self._mutable(lane, basket_id)
        try:
            member = await self._members.find(ref)  # may wait for the cloud
        except MemberError as err:
            # unknown: 404; the cloud needed and away: 503; a code refused (expired,
            # replayed, forged, ...) or not verifiable here: 403
            status = {"unknown_member": 404, "needs_cloud": 503}.get(err.reason, 403)
            raise self.refuse(status, err.reason, err.detail) from err
        basket = self._mutable(lane, basket_id)  # still open after the wait
        basket.member, basket.member_ref = member, ref
        return self._view(basket)

    async def clear_member(self, lane: LaneSettings, basket_id: str) -> dict[str, Any]:
        basket = self._mutable(lane, basket_id)
        basket.member = basket.member_ref = None
        return self._view(basket)

    async def set_order(self, lane: LaneSettings, basket_id: str, order_id: str
                        ) -> dict[str, Any]:
        """Collect a pickup order paid at the store (decision 0069): its lines are added
        to the basket, its member attached if the basket has none, and the sale names
        it, so the cloud does not take its units twice; it is handed over when the sale
        is recorded."""
        basket = self._mutable(lane, basket_id)
        if basket.order_id is not None:
            raise self.refuse(409, "has_order", f"basket {basket_id} collects order "
                                                f"{basket.order_id}: take it off first")
        doc = await self._open_order(order_id, basket_id)
        catalog = self.pos.catalog.catalog
        if catalog is None:
            raise self.refuse(503, "not_ready", "no catalog cached yet")
        lines = [(str(ln["sku"]), int(ln["qty"])) for ln in doc["lines"]]
        missing = [sku for sku, _ in lines if sku not in catalog.items]
        if missing:
            raise self.refuse(404, "unknown_item", f"order {order_id}: no item with scan "
                                                   f"code {missing[0]!r} in the catalog")
        new = {sku for sku, _ in lines if sku not in basket.lines}
        if len(basket.lines) + len(new) > MAX_LINES:
            raise self.refuse(409, "too_many_lines", f"a basket holds {MAX_LINES} lines")
        units: dict[str, int] = {}
        for sku, qty in lines:
            units[sku] = units.get(sku, 0) + qty
        if any((basket.lines[sku].qty if sku in basket.lines else 0) + qty > MAX_QTY
               for sku, qty in units.items()):
            raise self.refuse(409, "too_many_units", f"a line holds {MAX_QTY} units")
        member_id = doc.get("member_id")
        if member_id and basket.member is None:
            ref = MemberRef(member_id=member_id)
            try:
                member = await self._members.find(ref)
            except MemberError as err:  # sold without: the cashier may scan their code
                logger.info("order %s: member %s not attached: %s", order_id, member_id, err)
            else:
                basket = self._mutable(lane, basket_id)  # still open after the wait
                if basket.member is None:
                    basket.member, basket.member_ref = member, ref
        basket = self._mutable(lane, basket_id)
        if basket.order_id is not None:  # another call attached one meanwhile
            raise self.refuse(409, "has_order", f"basket {basket_id} collects order "
                                                f"{basket.order_id}")
        self._not_held(order_id, basket_id)  # again: no await from here to attaching it
        for sku, qty in lines:
            basket.add(sku, qty)
        basket.order_id = order_id
        return self._view(basket)

    async def clear_order(self, lane: LaneSettings, basket_id: str) -> dict[str, Any]:
        """Take the order off the basket, and its lines with it (what is left of them)."""
        basket = self._mutable(lane, basket_id)
        if basket.order_id is None:
            raise self.refuse(404, "no_order", f"basket {basket_id} collects no order")
        stored = await self.pos.ledger.order(basket.order_id)
        basket = self._mutable(lane, basket_id)
        for ln in stored.doc["lines"] if stored is not None else ():
            if ln["sku"] in basket.lines:
                basket.remove(ln["sku"], int(ln["qty"]))
        basket.order_id = None
        return self._view(basket)

    async def _open_order(self, order_id: str, basket_id: str) -> dict[str, Any]:
        """The order's dispatch, if a lane may collect it now; else the refusal."""
        stored = await self.pos.ledger.order(order_id)
        if stored is None:
            raise self.refuse(404, "unknown_order", f"no order {order_id!r} at this store")
        doc = stored.doc
        if doc.get("fulfilment") != "pickup":
            raise self.refuse(409, "not_pickup", f"order {order_id} is for delivery")
        if doc.get("payment") == "paid":
            raise self.refuse(409, "order_paid", f"order {order_id} was paid online: hand "
                                                 "it over, do not sell it again")
        if stored.status in FINAL_STATES:
            raise self.refuse(409, "order_closed", f"order {order_id} is {stored.status}")
        self._not_held(order_id, basket_id)
        return doc

    def _not_held(self, order_id: str, basket_id: str) -> None:
        held = next((b.basket_id for b in self._baskets.values()
                     if b.order_id == order_id and b.basket_id != basket_id), None)
        if held is not None:
            raise self.refuse(409, "order_in_basket", f"order {order_id} is in basket {held}")

    async def add_coupon(self, lane: LaneSettings, basket_id: str, code: str
                         ) -> dict[str, Any]:
        basket = self._mutable(lane, basket_id)
        if code not in basket.coupons:
            if len(basket.coupons) >= MAX_COUPONS:
                raise self.refuse(409, "too_many_coupons",
                                  f"a basket takes {MAX_COUPONS} coupon codes")
            basket.coupons.append(code)
        return self._view(basket)

    async def remove_coupon(self, lane: LaneSettings, basket_id: str, code: str
                            ) -> dict[str, Any]:
        basket = self._mutable(lane, basket_id)
        if code not in basket.coupons:
            raise self.refuse(404, "not_in_basket", f"coupon {code!r} is not on the basket")
        basket.coupons.remove(code)
        return self._view(basket)

    async def set_tender(self, lane: LaneSettings, basket_id: str, tender: TenderIn
                         ) -> dict[str, Any]:
        basket = self._mutable(lane, basket_id)
        self._check_tender(basket, tender)
        tenders = Tenders(method=tender.method, cash_given=tender.cash_given,
                          points=tender.points, stored_value=tender.stored_value)
        priced = self._price(basket, tenders)
        if priced is not None and tender.cash_given is not None \
                and tender.cash_given < priced.paid:
            raise self.refuse(409, "short_tender", f"cash given {tender.cash_given} is "
                                                   f"less than the {priced.paid} to pay")
        basket.tender = tenders
        return self._view(basket, priced)

    def _check_tender(self, basket: OpenBasket, tender: TenderIn) -> None:
        if tender.method == "card" and tender.cash_given is not None:
            raise self.refuse(422, "invalid", "cash_given is for a cash tender")
        if (tender.points or tender.stored_value) and basket.member is None:
            raise self.refuse(409, "no_member", "points and stored value need a member")

    async def void(self, lane: LaneSettings, basket_id: str) -> None:
        self._close(self._mutable(lane, basket_id))

    def _mutable(self, lane: LaneSettings, basket_id: str) -> OpenBasket:
        """The basket, refused while it is being completed (what it sells is fixed)."""
        basket = self._basket(lane, basket_id)
        if basket.completing:
            raise self.refuse(409, "completing", f"basket {basket_id} is being completed")
        return basket

    def _close(self, basket: OpenBasket) -> None:
        self._baskets.pop(basket.basket_id, None)
        self.metrics.open_baskets.set(len(self._baskets))

    # ---- completing and refunding ----------------------------------------------------------

    async def complete(self, lane: LaneSettings, basket_id: str, *,
                       cashier: str | None = None) -> dict[str, Any]:
        done = self._completed[lane.id].get(basket_id)
        if done is not None:  # a terminal repeating itself after a lost answer
            return {**done, "replayed": True}
        basket = self._mutable(lane, basket_id)  # a second complete meanwhile: 409
        if not basket.lines:
            raise self.refuse(409, "empty", "a sale needs at least one item")
        if basket.tender is None:
            raise self.refuse(409, "no_tender", "set the tender before completing")
        basket.completing = True
        try:
            if basket.order_id is not None:  # still to collect (a desk may have closed it)
                await self._open_order(basket.order_id, basket.basket_id)
            sale = await self._services[lane.id].sell(
                basket.engine_lines(), member=basket.member, coupons=basket.coupons,
                tenders=basket.tender, sale_id=basket.basket_id, cashier=cashier,
                till_id=lane.id, spends=self._spends(basket), order_id=basket.order_id)
            # before the basket closes: until the order is handed over, its basket still
            # holds it, so no other basket can take it up meanwhile
            handed_over = await self._hand_over(basket.order_id)
        except SaleRefused as err:
            if err.reason == "duplicate":  # recorded, its answer lost (a restart): done
                self._close(basket)
            raise self.refuse(_STATUS.get(err.reason, 409), err.reason, err.detail) from err
        except NotReady as err:
            raise self.refuse(503, "not_ready", str(err)) from err
        finally:
            basket.completing = False
        self._close(basket)
        receipt = sale.receipt
        answer = {
            "sale_id": sale.sale_id, "lane_id": lane.id, "offline": sale.offline,
            "printed": sale.printed, "total": sale.priced.total, "paid": sale.priced.paid,
            "charged": sale.charged, "change": receipt.change,
            "points_earned": sale.priced.points_earned,
            "points_used": sale.priced.points_used, "capped": list(sale.capped),
            "coupons_used": list(sale.coupons_used),
            "refused_coupons": dict(sale.refused_coupons),
            "receipt": receipt.model_dump(mode="json"), "replayed": False,
            "order_id": basket.order_id, "order_handed_over": handed_over,
        }
        self._completed[lane.id].put(basket_id, answer)
        self.metrics.sales.labels(lane=lane.id).inc()
        return answer

    async def _hand_over(self, order_id: str | None) -> bool:
        """The order's goods are with the shopper: every status left is reported. A
        failure here does not undo the sale (it is recorded): logged and counted."""
        if order_id is None:
            return False
        try:
            await self.pos.orders.hand_over(order_id)
        except PosError as err:
            self.metrics.orders.labels(result="not_handed_over").inc()
            logger.error("order %s sold at a lane but not handed over: %s", order_id, err)
            return False
        self.metrics.orders.labels(result="handed_over").inc()
        return True

    def _spends(self, basket: OpenBasket) -> BasketSpends | None:
        """What authorises the points and stored value the basket's sale pays with: the
        members module (``StoreMembers``), or None when the directory does not (the
        cloud takes ``points_used`` when the sale arrives, the till's caps apply)."""
        if basket.member is None or not self._members.authorises_spends:
            return None
        return BasketSpends(self._members, basket.member.id, basket.basket_id,
                            now_ms=self._clock.now_ms, refuse=self.refuse)

    async def reconcile_spends(self) -> int:
        """Before the lanes sell: spends a crash left without their sale are given back
        (decision 0068)."""
        async def recorded(sale_id: str) -> bool:
            return await self.pos.ledger.sale(sale_id) is not None

        return await self._members.reconcile(recorded)

    async def sell(self, lane: LaneSettings, sale: SaleIn) -> dict[str, Any]:
        """A whole sale in one call (``SaleIn``): a basket of this lane rung up and
        completed at once. A refusal voids it; nothing was recorded then."""
        sale_id = sale.sale_id or uuid7(self._clock.now_ms())
        done = self._completed[lane.id].get(sale_id)
        if done is not None:  # the terminal repeating itself after a lost answer
            return {**done, "replayed": True}
        if sale_id in self._baskets:
            raise self.refuse(409, "basket_open", f"a basket {sale_id!r} is open")
        basket = OpenBasket(basket_id=sale_id, lane_id=lane.id,
                            opened_ms=self._clock.now_ms())
        self._baskets[sale_id] = basket
        try:
            catalog = self.pos.catalog.catalog
            if catalog is None:
                raise self.refuse(503, "not_ready", "no catalog cached yet")
            if sale.order_id is not None:
                await self.set_order(lane, sale_id, sale.order_id)
            for line in sale.lines:
                if line.code not in catalog.items:
                    raise self.refuse(404, "unknown_item",
                                      f"no item with scan code {line.code!r}")
                held = basket.lines.get(line.code)
                if (held.qty if held else 0) + line.qty > MAX_QTY:
                    raise self.refuse(409, "too_many_units", f"a line holds {MAX_QTY} units")
                basket.add(line.code, line.qty)
            if sale.member is not None:
                await self.set_member(lane, sale_id, sale.member)
            basket.coupons.extend(dict.fromkeys(sale.coupons))
            self._check_tender(basket, sale.tender)
            basket.tender = Tenders(method=sale.tender.method,
                                    cash_given=sale.tender.cash_given,
                                    points=sale.tender.points,
                                    stored_value=sale.tender.stored_value)
            return await self.complete(lane, sale_id, cashier=sale.cashier)
        finally:
            self._close(basket)  # completed (closed already) or refused: gone

    async def sale(self, lane: LaneSettings, sale_id: str) -> dict[str, Any]:
        """A completed sale of this store (any lane's): its lines and what was returned."""
        stored = await self.pos.ledger.sale(sale_id)
        if stored is None:
            raise self.refuse(404, "unknown_sale", f"no sale {sale_id!r} at this store")
        priced = PricedBasket.from_json(stored[0])
        returned = await self.pos.ledger.returned(sale_id)
        return {"sale_id": sale_id, "member_id": stored[1], "currency": priced.currency,
                "total": priced.total, "paid": priced.paid,
                "lines": [{"line_id": ln.line_id, "sku": ln.sku, "qty": ln.qty,
                           "amount": ln.net, "paid": ln.paid,
                           "returned": returned.get(ln.line_id, 0)} for ln in priced.lines]}

    async def refund(self, lane: LaneSettings, sale_id: str,
                     lines: Mapping[str, int] | None) -> dict[str, Any]:
        try:
            result = await self._services[lane.id].refund(sale_id, lines)
        except SaleRefused as err:
            raise self.refuse(_STATUS.get(err.reason, 409), err.reason, err.detail) from err
        self.metrics.refunds.labels(lane=lane.id).inc()
        return {"lane_id": lane.id, **result.to_dict()}

    # ---- what a terminal shows -----------------------------------------------------------

    def _price(self, basket: OpenBasket, tenders: Tenders | None = None
               ) -> PricedBasket | None:
        """The basket as it would sell now (None while it is empty). Coupon codes the
        till resolves alone (promotion codes, this store's ranges) price here; a
        single-use code the cloud redeems counts at completion."""
        if not basket.lines:
            return None
        tenders = tenders or basket.tender or Tenders()
        member = basket.member
        engine_codes = [c for c in (self._engine_code(code) for code in basket.coupons) if c]
        priced_basket = Basket(id=basket.basket_id, currency=self.pos.service.store.currency,
                               lines=basket.engine_lines(), coupons=tuple(engine_codes),
                               points_to_redeem=tenders.points if member else 0,
                               stored_value_to_use=tenders.stored_value if member else 0)
        try:
            return self.pos.service.price_basket(priced_basket, member, self._clock.now_ms())
        except NotReady as err:
            raise self.refuse(503, "not_ready", str(err)) from err
        except PricingError as err:
            raise self.refuse(409, "unpriceable", str(err)) from err

    def _engine_code(self, code: str) -> str | None:
        cached = self.pos.promotions.ruleset("pos")
        if cached is not None and any(getattr(p, "code", None) == code
                                      for p in cached[0].promotions):
            return code
        rng = self.pos.ranges.lookup(code, now_ms=self._clock.now_ms())
        return str(rng["engine_code"]) if rng is not None else None

    def _coupon_states(self, basket: OpenBasket, priced: PricedBasket | None
                       ) -> list[dict[str, str]]:
        rejected = set(priced.rejected_coupons) if priced else set()
        out = []
        for code in basket.coupons:
            engine = self._engine_code(code)
            state = ("at_completion" if engine is None else
                     "pending" if priced is None else
                     "not_applied" if engine in rejected else "applies")
            out.append({"code": code, "state": state})
        return out

    def _view(self, basket: OpenBasket, priced: PricedBasket | None = None
              ) -> dict[str, Any]:
        priced = priced or self._price(basket)
        catalog = self.pos.catalog.catalog
        names = {code: (catalog.items[code].name or code) if catalog and code in
                 catalog.items else code for code in basket.lines}
        by_line = {ln.line_id: ln for ln in priced.lines} if priced else {}
        tender = basket.tender
        change = 0
        if priced is not None and tender is not None and tender.cash_given is not None:
            change = max(0, tender.cash_given - priced.paid)
        return {
            "basket_id": basket.basket_id, "lane_id": basket.lane_id,
            "currency": self.pos.service.store.currency,
            "lines": [{"line_id": ln.line_id, "code": ln.code, "name": names[ln.code],
                       "qty": ln.qty,
                       "unit_price": by_line[ln.line_id].unit_price if priced else 0,
                       "amount": by_line[ln.line_id].net if priced else 0}
                      for ln in basket.lines.values()],
            "member": None if basket.member is None else {
                "member_id": basket.member.id, "tier": basket.member.tier},
            "order_id": basket.order_id,
            "coupons": self._coupon_states(basket, priced),
            "subtotal": priced.subtotal if priced else 0,
            "discount": priced.discount if priced else 0,
            "total": priced.total if priced else 0,
            "to_pay": priced.paid if priced else 0,
            "points_earned": priced.points_earned if priced else 0,
            "tender": None if tender is None else {
                "method": tender.method, "cash_given": tender.cash_given,
                "points": tender.points, "stored_value": tender.stored_value,
                "change": change},
        }
