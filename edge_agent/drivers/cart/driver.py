"""Smart carts over the store-local MQTT bus: one driver instance for all carts.

Family ``cart``; one configured device (e.g. ``id = "carts"``) drives every tablet on
``store/cart/+/...`` - a store has tens to hundreds of carts that come and go, so they
are not configured one by one (their online state and model still reach the cloud
through their retained ``up/state``). The driver:

- tracks sessions (start/end, member id from the member QR, basket) and emits one
  ``cart_session`` event per start and end, with idempotent ids (``{session}.start``),
  so a redelivered message is stored once;
- keeps each cart's last BLE scan report and fans reports out to subscribers
  (``subscribe_scans()``: a bounded queue per subscriber, oldest dropped when full);
- pushes screen messages (``await send_screen(cart_id, title=..., body=...)``) on
  ``down/screen`` with a ``msg_id`` and resolves the cart's ``up/ack``.

Isolation: messages are validated (garbage is counted per cart and dropped), scan
reports are rate limited per cart (token bucket; a flooding cart loses its excess, the
others are untouched), and every table is bounded (``max_carts``, ``max_items``,
``max_pending_acks``).

Options (``CartOptions``): ``max_carts`` (500), ``scan_rate_hz`` (10, sustained per
cart), ``scan_burst`` (20), ``max_items`` (200 distinct barcodes per session),
``ack_timeout_s`` (5), ``max_pending_acks`` (16 per cart), ``offline_after_s`` (30, for
health). Commands: ``list_carts``, ``screen`` {cart_id, title, body}. Capability:
``CartFleet`` (sessions, scan reports, screens).

Errors: ``CartError`` (a ``DriverError``) for an unknown cart, too many pending
messages; ``ScreenTimeout`` (a ``CartError``) when no ack comes in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge
from pydantic import Field, PositiveFloat

from edge_agent.drivers.base import (
    CommandArgs,
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverContext,
    DriverError,
    DriverOptions,
    command,
    register,
)
from edge_agent.drivers.capabilities import BusyReporter, CartFleet
from edge_agent.drivers.cart.state import Cart, Session
from edge_agent.drivers.links import TokenBucket
from protocols import decode, encode, topics
from protocols.cart import (
    CART_KIND,
    CartItem,
    CartScan,
    CartSessionMsg,
    ScreenAck,
    ScreenMessage,
    member_from_qr,
)
from protocols.errors import DecodeError, TopicError
from protocols.ids import uuid7

logger = logging.getLogger(__name__)


class CartError(DriverError):
    """A cart request failed (unknown cart, too many pending screen messages)."""


class ScreenTimeout(CartError):
    """The cart did not acknowledge a screen message in time."""


@dataclass(frozen=True, slots=True)
class ScanReport:
    cart_id: str
    session_id: str | None
    member_id: str | None
    scan: CartScan


@dataclass(frozen=True, slots=True)
class ScreenResult:
    cart_id: str
    msg_id: str
    status: str  # "shown" | "dismissed"
    latency_ms: int


class ScanSubscription:
    """Scan reports of every cart as an async iterator; bounded, oldest dropped."""

    def __init__(self, owner: CartDriver, maxsize: int) -> None:
        self._owner = owner
        self.queue: asyncio.Queue[ScanReport] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def offer(self, report: ScanReport) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # a slow consumer sees the newest positions
            self.dropped += 1
            self._owner.metrics.scans_dropped.inc()
        self.queue.put_nowait(report)

    def close(self) -> None:
        self._owner._subscribers.discard(self)

    def __aiter__(self) -> AsyncIterator[ScanReport]:
        return self

    async def __anext__(self) -> ScanReport:
        return await self.queue.get()


class CartMetrics:
    def __init__(self, ctx: DriverContext) -> None:
        r = ctx.registry
        self.messages = Counter("storefleet_cart_messages", "cart messages taken in",
                                ["type"], registry=r)
        self.rejected = Counter("storefleet_cart_rejected",
                                "cart messages refused (garbage, flood, bounds)",
                                ["reason"], registry=r)
        self.sessions = Gauge("storefleet_cart_sessions_active", "open cart sessions",
                              registry=r)
        self.screen = Counter("storefleet_cart_screen_messages",
                              "screen messages sent, by outcome", ["outcome"], registry=r)
        self.scans_dropped = Counter(
            "storefleet_cart_scans_dropped", "scan reports a slow subscriber (positioning, "
            "coupon triggers) never saw: its queue was full, the oldest went", registry=r)


_METRICS: weakref.WeakKeyDictionary[Any, CartMetrics] = weakref.WeakKeyDictionary()


def _metrics(ctx: DriverContext) -> CartMetrics:
    if ctx.registry not in _METRICS:
        _METRICS[ctx.registry] = CartMetrics(ctx)
    return _METRICS[ctx.registry]


class CartOptions(DriverOptions):
    max_carts: int = Field(500, gt=0)
    scan_rate_hz: PositiveFloat = 10.0  # scan reports per cart, sustained
    scan_burst: PositiveFloat = 20.0
    max_items: int = Field(200, gt=0)  # distinct barcodes per session
    ack_timeout_s: PositiveFloat = 5.0
    max_pending_acks: int = Field(16, gt=0)  # unacknowledged screen messages per cart
    offline_after_s: PositiveFloat = 30.0  # health: a cart unheard this long is not active


class ScreenArgs(CommandArgs):
    cart_id: str
    title: str = Field(max_length=80)  # what a cart's native title bar shows
    body: str = Field("", max_length=500)


@register
class CartDriver(Driver, CartFleet, BusyReporter):
    family = "cart"
    Options = CartOptions
    options: CartOptions

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        opts = self.options
        self.max_carts = opts.max_carts
        self.scan_rate_hz = opts.scan_rate_hz
        self.scan_burst = opts.scan_burst
        self.max_items = opts.max_items
        self.ack_timeout_s = opts.ack_timeout_s
        self.max_pending_acks = opts.max_pending_acks
        self.offline_after_ms = int(opts.offline_after_s * 1000)
        self.metrics = _metrics(ctx)
        self.carts: dict[str, Cart] = {}
        self._subscribers: set[ScanSubscription] = set()
        self._pending: dict[str, tuple[str, asyncio.Future[ScreenAck]]] = {}  # msg_id -> cart
        self._running = False

    # ---- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        self.ctx.on_local(CART_KIND, self._on_local)
        self._running = True
        try:
            await asyncio.Event().wait()  # all work happens in _on_local and send_screen
        finally:
            self._running = False
            self.ctx.off_local(CART_KIND, self._on_local)

    def health(self) -> DeviceHealth:
        now = self.ctx.clock.now_ms()
        recent = [c for c in self.carts.values()
                  if c.last_seen_ms is not None and now - c.last_seen_ms <= self.offline_after_ms]
        seen = [c.last_seen_ms for c in self.carts.values() if c.last_seen_ms is not None]
        return DeviceHealth(
            online=self._running,
            last_seen_ms=max(seen) if seen else None,
            details={
                "carts_active": len(recent),
                "carts_known": len(self.carts),
                "sessions_open": sum(1 for c in self.carts.values() if c.session is not None),
                "screen_pending": len(self._pending),
            },
        )

    def busy_reason(self) -> str | None:
        """Carts in use (a session open, heard from within ``offline_after_s``) hold back
        an agent restart (decision 0043); a cart gone silent mid-session does not hold it
        for ever."""
        now = self.ctx.clock.now_ms()
        in_use = sorted(cart_id for cart_id, c in self.carts.items()
                        if c.session is not None and c.last_seen_ms is not None
                        and now - c.last_seen_ms <= self.offline_after_ms)
        if not in_use:
            return None
        return f"{len(in_use)} cart(s) in use ({', '.join(in_use[:5])})"

    # ---- the in-process API -------------------------------------------------------------

    def subscribe_scans(self, *, maxsize: int = 256) -> ScanSubscription:
        """Every cart's scan reports (positioning, coupon triggers); ``close()`` when done."""
        sub = ScanSubscription(self, maxsize)
        self._subscribers.add(sub)
        return sub

    def session_of(self, cart_id: str) -> Session | None:
        cart = self.carts.get(cart_id)
        return None if cart is None else cart.session

    async def send_screen(self, cart_id: str, *, title: str, body: str = "", kind: str = "info",
                          timeout_s: float | None = None) -> ScreenResult:
        """Show a message on a cart's screen; returns once the cart acknowledged it."""
        if not topics.valid_id(cart_id):
            raise CartError(self.device_id, f"bad cart id {cart_id!r}")
        if sum(1 for c, _ in self._pending.values() if c == cart_id) >= self.max_pending_acks:
            self.metrics.screen.labels(outcome="refused").inc()
            raise CartError(self.device_id, f"cart {cart_id}: too many unacknowledged messages")
        sent_ms = self.ctx.clock.now_ms()
        message = ScreenMessage(msg_id=uuid7(sent_ms), ts=sent_ms, kind=kind, title=title,
                                body=body)
        future: asyncio.Future[ScreenAck] = asyncio.get_running_loop().create_future()
        self._pending[message.msg_id] = (cart_id, future)
        try:
            await self.ctx.publish_local(topics.local(CART_KIND, cart_id, "down", "screen"),
                                         encode(message), qos=1)
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
            # cancellation that races with completion (the task then never stops).
            async with asyncio.timeout(timeout_s or self.ack_timeout_s):
                ack = await future
        except TimeoutError as err:
            self.metrics.screen.labels(outcome="timeout").inc()
            raise ScreenTimeout(self.device_id,
                                f"cart {cart_id} did not acknowledge {message.msg_id}") from err
        finally:
            self._pending.pop(message.msg_id, None)
        self.metrics.screen.labels(outcome="acknowledged").inc()
        return ScreenResult(cart_id=cart_id, msg_id=message.msg_id, status=ack.status,
                            latency_ms=self.ctx.clock.now_ms() - sent_ms)

    @command("list_carts")
    async def _list_carts(self, args: Any) -> dict[str, Any]:
        return {"carts": [c.public() for c in self.carts.values()]}

    @command("screen", ScreenArgs)
    async def _screen(self, args: ScreenArgs) -> dict[str, Any]:
        try:
            result = await self.send_screen(args.cart_id, title=args.title, body=args.body)
        except CartError as err:
            raise DriverError(self.device_id, err.detail) from err
        return {"msg_id": result.msg_id, "status": result.status,
                "latency_ms": result.latency_ms}

    # ---- local bus ----------------------------------------------------------------------

    async def _on_local(self, cart_id: str, type_: str, payload: bytes) -> None:
        if not self._running:
            return
        cart = self._cart(cart_id)
        if cart is None:
            return
        cart.last_seen_ms = self.ctx.clock.now_ms()
        try:
            match type_:
                case "scan":
                    self._on_scan(cart, payload)
                case "session":
                    await self._on_session(cart, decode(payload, CartSessionMsg))
                case "item":
                    self._on_item(cart, decode(payload, CartItem))
                case "ack":
                    self._on_ack(cart, decode(payload, ScreenAck))
                case "snapshot":  # the basket camera's: the vision pipeline takes those
                    return
                case _:
                    self._reject(cart, "unknown_type", type_)
                    return
        except (DecodeError, TopicError) as err:
            self._reject(cart, getattr(err, "reason", "invalid"), str(err))
            return
        self.metrics.messages.labels(type=type_).inc()

    def _cart(self, cart_id: str) -> Cart | None:
        cart = self.carts.get(cart_id)
        if cart is None:
            if len(self.carts) >= self.max_carts:
                self.metrics.rejected.labels(reason="too_many_carts").inc()
                return None
            cart = self.carts[cart_id] = Cart(
                cart_id=cart_id,
                bucket=TokenBucket(rate=self.scan_rate_hz, burst=self.scan_burst,
                                   clock=self.ctx.clock))
        return cart

    def _reject(self, cart: Cart, reason: str, detail: str) -> None:
        cart.bad_messages += 1
        self.metrics.rejected.labels(reason=reason).inc()
        # debug, not warning: a flooding cart would otherwise flood the log too
        logger.debug("cart %s: %s (%s)", cart.cart_id, reason, detail[:200])

    def _on_scan(self, cart: Cart, payload: bytes) -> None:
        # Rate-limit before decoding: a flood costs a bucket check, not a pydantic parse.
        if not cart.bucket.take():
            cart.rate_limited += 1
            self.metrics.rejected.labels(reason="rate_limited").inc()
            return
        scan = decode(payload, CartScan)
        cart.last_scan = scan
        session = cart.session
        report = ScanReport(cart.cart_id, session.session_id if session else scan.session_id,
                            session.member_id if session else None, scan)
        for sub in list(self._subscribers):
            sub.offer(report)

    async def _on_session(self, cart: Cart, msg: CartSessionMsg) -> None:
        now = self.ctx.clock.now_ms()
        if msg.action == "start":
            if cart.session is not None and cart.session.session_id == msg.session_id:
                return  # redelivered start
            if cart.session is not None:  # a start without an end: close the old one
                await self._end(cart, cart.session, now_ms=now, reason="superseded")
            member = member_from_qr(msg.member_qr)
            if msg.member_qr is not None and member is None:
                self.metrics.rejected.labels(reason="bad_member_qr").inc()
            cart.session = Session(session_id=msg.session_id, member_id=member, started_ms=msg.ts)
            cart.sessions_total += 1
            await self.ctx.emit_event("cart_session", device_id=cart.cart_id,
                                      event_id=f"{msg.session_id}.start", data={
                                          "cart_id": cart.cart_id, "action": "start",
                                          "session_id": msg.session_id, "member_id": member,
                                          "ts": msg.ts})
        elif cart.session is not None and cart.session.session_id == msg.session_id:
            await self._end(cart, cart.session, now_ms=msg.ts, reason="checkout")
        self.metrics.sessions.set(sum(1 for c in self.carts.values() if c.session is not None))

    async def _end(self, cart: Cart, session: Session, *, now_ms: int, reason: str) -> None:
        cart.session = None
        await self.ctx.emit_event("cart_session", device_id=cart.cart_id,
                                  event_id=f"{session.session_id}.end", data={
                                      "cart_id": cart.cart_id, "action": "end",
                                      "session_id": session.session_id,
                                      "member_id": session.member_id, "reason": reason,
                                      "duration_ms": max(0, now_ms - session.started_ms),
                                      "items": dict(session.items),
                                      "item_count": sum(session.items.values())})

    def _on_item(self, cart: Cart, msg: CartItem) -> None:
        session = cart.session
        if session is None or session.session_id != msg.session_id:
            self._reject(cart, "no_session", msg.session_id)
            return
        if msg.barcode not in session.items and len(session.items) >= self.max_items:
            self._reject(cart, "basket_full", msg.barcode)
            return
        qty = session.items.get(msg.barcode, 0) + msg.qty
        if qty > 0:
            session.items[msg.barcode] = qty
        else:
            session.items.pop(msg.barcode, None)
        session.item_events += 1

    def _on_ack(self, cart: Cart, ack: ScreenAck) -> None:
        pending = self._pending.get(ack.msg_id)
        if pending is None or pending[0] != cart.cart_id:
            self.metrics.rejected.labels(reason="unknown_ack").inc()  # late, or not its own
            return
        with contextlib.suppress(asyncio.InvalidStateError):
            pending[1].set_result(ack)
