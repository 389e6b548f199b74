"""Online orders at the store box: receive, print the pick ticket, report status.

    desk = OrderDesk(store_id="S001", ledger=ledger, sink=agent.driver_context,
                     clock=clock, registry=registry, tickets_dir=data_dir / "orders",
                     peripherals=lambda: pos_peripherals)
    await desk.handle(payload)                 # an OrderDispatch from cmd/orders
    await desk.advance(order_id, "picking")    # staff: picking, ready, handed_over ...
    await desk.hand_over(order_id)             # a lane sold it: every step left, reported

A received order is stored (``pos_orders``, keyed by order id) before anything else, so
a redelivered dispatch is recognised: it prints once. The pick ticket goes to the
receipt printer through ``PosPeripherals.print_ticket``; without a printer (or while it
cannot print) the rendering is written to ``tickets_dir/{order_id}.txt`` and printing is
retried on the next delivery of the same order. Every transition (``accepted`` on
receipt, then what staff do) is checked against ``protocols.orders.can_transition`` and
sent as an ``order_status`` event through the durable outbox; its event id is
``{order_id}-{status}`` (``status_event_id``), so a repeated report is one event for the
cloud.

An order id is an ``Id`` (``protocols.ids``): ``decode`` refuses a dispatch whose id could
leave the tickets folder (``../x``, ``a b``), so it is counted as ``bad_payload`` and
nothing is written; the ticket path checks the id again before it is built.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from edge_agent.pos.ledger import PosLedger, StoredOrder
from edge_agent.pos.peripherals import PeripheralUnavailable, PosError, PosPeripherals
from edge_agent.pos.receipt import money
from edge_agent.pos.sales import EventSink
from protocols.clock import Clock
from protocols.codec import decode
from protocols.errors import DecodeError
from protocols.ids import ID_MAX, check_id
from protocols.orders import TRANSITIONS, OrderDispatch, OrderStatusData, can_transition

logger = logging.getLogger(__name__)


class IllegalTransition(PosError):
    def __init__(self, order_id: str, current: str, new: str) -> None:
        super().__init__(f"order {order_id}: {current} -> {new} is not allowed")
        self.order_id = order_id
        self.current = current
        self.new = new


class OrderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "storefleet_pos_orders_received",
            "order dispatches by result (new, duplicate, bad_payload, wrong_store)",
            ["result"], registry=registry)
        self.tickets = Counter(
            "storefleet_pos_order_tickets", "pick tickets by where they went (printer, file)",
            ["where"], registry=registry)
        self.transitions = Counter(
            "storefleet_pos_order_transitions", "order status changes by result",
            ["result"], registry=registry)


def status_event_id(order_id: str, status: str) -> str:
    """The event id of an order's ``status`` report: the same for a repeated report.

    ``{order_id}-{status}`` while it fits an id; a long order id (up to 64 characters,
    plus ``-out_for_delivery``) does not, so its status events are named by a hash of
    both instead: 24 hex characters (96 bits) make a collision negligible."""
    plain = f"{order_id}-{status}"
    if len(plain) <= ID_MAX:
        return plain
    digest = hashlib.sha256(f"{order_id}|{status}".encode()).hexdigest()[:24]
    return f"ord-{digest}-{status}"


def ticket_lines(order: OrderDispatch) -> list[str]:
    kind = "DELIVERY" if order.fulfilment == "delivery" else "PICKUP"
    lines = [f"ONLINE ORDER - {kind}", f"Order {order.order_id}",
             f"Customer: {order.customer.name}"]
    if order.customer.phone:
        lines.append(f"Phone: {order.customer.phone}")
    if order.customer.address:
        lines.append(f"Deliver to: {order.customer.address}")
    lines.append("-" * 20)
    lines += [f"{ln.qty:>3} x {ln.sku}  {ln.name}".rstrip() for ln in order.lines]
    if order.total is not None and order.currency is not None:
        # The price fixed at placement (decision 0067): paid online, or what the store
        # collects at pickup or delivery.
        what = "PAID ONLINE" if order.payment == "paid" else "TO COLLECT"
        lines += ["-" * 20, f"{what}: {money(order.total)} {order.currency}"]
    if order.note:
        lines += ["-" * 20, f"Note: {order.note}"]
    return lines


class OrderDesk:
    def __init__(self, *, store_id: str, ledger: PosLedger, sink: EventSink, clock: Clock,
                 registry: CollectorRegistry, tickets_dir: Path,
                 peripherals: Callable[[], PosPeripherals | None] = lambda: None,
                 device_id: str = "orders") -> None:
        self.store_id = store_id
        self._ledger = ledger
        self._sink = sink
        self._clock = clock
        self.metrics = OrderMetrics(registry)
        self.tickets_dir = tickets_dir
        self._peripherals = peripherals
        self._device_id = device_id
        self._lock = asyncio.Lock()  # one dispatch at a time: print-once needs no race

    async def handle(self, payload: bytes) -> StoredOrder | None:
        try:
            order = decode(payload, OrderDispatch)
        except DecodeError as err:
            self.metrics.received.labels(result="bad_payload").inc()
            logger.warning("order dispatch refused: %s", err)
            return None
        if order.store_id != self.store_id:
            self.metrics.received.labels(result="wrong_store").inc()
            logger.warning("order %s is for store %s, not %s", order.order_id, order.store_id,
                           self.store_id)
            return None
        async with self._lock:
            stored = await self._ledger.remember_order(
                order.order_id, order.model_dump(mode="json"), ts=self._clock.now_ms())
            new = stored.status == "placed"
            self.metrics.received.labels(result="new" if new else "duplicate").inc()
            if not stored.printed:
                if await self._print(order):
                    await self._ledger.set_order(order.order_id, printed=True)
            if new:
                await self._report(order.order_id, "accepted")
                await self._ledger.set_order(order.order_id, status="accepted")
        return await self._ledger.order(order.order_id)

    async def advance(self, order_id: str, status: str, *, reason: str | None = None) -> None:
        async with self._lock:
            stored = await self._ledger.order(order_id)
            if stored is None:
                self.metrics.transitions.labels(result="unknown_order").inc()
                raise PosError(f"no order {order_id!r} at this store")
            fulfilment = stored.doc["fulfilment"]
            if not can_transition(fulfilment, stored.status, status):
                self.metrics.transitions.labels(result="illegal").inc()
                raise IllegalTransition(order_id, stored.status, status)
            await self._report(order_id, status, reason=reason)
            await self._ledger.set_order(order_id, status=status)

    async def hand_over(self, order_id: str) -> list[str]:
        """A pickup order collected at a lane (decision 0069): each status left between
        where it is and ``handed_over`` is reported in turn (``picking``, ``ready``,
        ``handed_over``), so the cloud sees the same steps as from the desk. Returns the
        steps taken; ``IllegalTransition`` if it is closed (or not a pickup)."""
        async with self._lock:
            stored = await self._ledger.order(order_id)
            if stored is None:
                self.metrics.transitions.labels(result="unknown_order").inc()
                raise PosError(f"no order {order_id!r} at this store")
            path = _path_to(stored.doc["fulfilment"], stored.status, "handed_over")
            if path is None:
                self.metrics.transitions.labels(result="illegal").inc()
                raise IllegalTransition(order_id, stored.status, "handed_over")
            for status in path:
                await self._report(order_id, status)
                await self._ledger.set_order(order_id, status=status)
            return path

    async def _report(self, order_id: str, status: str, *, reason: str | None = None) -> None:
        data = OrderStatusData(order_id=order_id, status=status,  # type: ignore[arg-type]
                               ts=self._clock.now_ms(), reason=reason)
        await self._sink.emit_event("order_status", device_id=self._device_id,
                                    data=data.model_dump(mode="json"),
                                    event_id=status_event_id(order_id, status))
        self.metrics.transitions.labels(result="reported").inc()

    async def _print(self, order: OrderDispatch) -> bool:
        lines = ticket_lines(order)
        peripherals = self._peripherals()
        if peripherals is not None and peripherals.printer is not None:
            try:
                await peripherals.print_ticket(lines)
                self.metrics.tickets.labels(where="printer").inc()
                return True
            except PeripheralUnavailable as err:
                logger.warning("pick ticket %s not printed: %s", order.order_id, err)
        # Decoding checked the id already; a path is built from it only if it is one.
        path = self.tickets_dir / f"{check_id(order.order_id, 'order id')}.txt"
        # A few hundred bytes once per order; off the loop anyway (an SD card can stall).
        await asyncio.to_thread(_write_ticket, path, "\n".join(lines) + "\n")
        self.metrics.tickets.labels(where="file").inc()
        return False


def _path_to(fulfilment: str, current: str, goal: str) -> list[str] | None:
    """The statuses from ``current`` (excluded) to ``goal``, never through
    ``cancelled``; None when there is no such way."""
    if fulfilment not in TRANSITIONS:
        return None
    path: list[str] = []
    while current != goal:
        steps = sorted(TRANSITIONS[fulfilment].get(current, frozenset()) - {"cancelled"})
        if not steps:
            return None
        current = goal if goal in steps else steps[0]
        path.append(current)
    return path or None


def _write_ticket(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
