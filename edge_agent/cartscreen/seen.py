"""What the cart cameras saw, put to use: related coupons and "seen but not scanned".

``InAisle`` builds one ``SeenInCart``; the composition root hands it every
``CategorySeen`` of the vision pipeline (``on_seen``). A sighting from a cart (its
source is the cart id) goes to the trigger engine, where rules with a
``vision_category`` cue may fire for that cart, and to the ``UnscannedCheck``: once
``window_s`` has passed, a picture of a category with no matching scanned unit in the
cart's session raises ``storefleet_vision_unscanned_total{category}`` and a
``device_alarm`` event (``alarm = "unscanned_item"``) for the cart, and ``remind`` asks
the shopper, on the cart's screens, to scan it (a prompt, not an accusation: the
picture may be of something the shopper brought in).

A scanned item's category is its catalog category (the demo catalog names them with
the vision model's categories); a chain whose catalog uses other names gives the
bundle a ``vision_categories`` table (catalog category -> vision category).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import Counter

from edge_agent.errors import AgentError
from edge_agent.inference.triggers.service import EventSink, TriggerService
from edge_agent.inference.vision.unscanned import Unscanned, UnscannedCheck
from pricing import Catalog
from protocols.vision import CategorySeen

logger = logging.getLogger(__name__)

SWEEP_S = 1.0  # how often windows that are over get judged; alarms are not urgent

Reminder = Callable[[Unscanned], None]
"""Told of each unscanned item once judged (the cart screens' prompt); must not block."""


class SeenInCart:
    def __init__(self, ctx: EventSink, *, triggers: TriggerService,
                 carts: Callable[[], Any], catalog: Callable[[], Catalog | None],
                 window_s: float = 30.0,
                 category_map: Mapping[str, str] | None = None,
                 remind: Reminder | None = None) -> None:
        self.ctx = ctx
        self.triggers = triggers
        self._carts = carts
        self._catalog = catalog
        self.check = UnscannedCheck(window_ms=int(window_s * 1000))
        self.category_map = dict(category_map or {})
        self.remind = remind
        self.alarms: list[Unscanned] = []  # the last few, for the demo summary and tests
        self.unscanned = Counter("storefleet_vision_unscanned",
                                 "products seen going into a cart with no matching scan "
                                 "within the window", ["category"], registry=ctx.registry)
        self.sightings = Counter("storefleet_vision_cart_sightings",
                                 "categories seen by cart cameras, by what they were used for",
                                 ["use"], registry=ctx.registry)

    def _session_id(self, cart_id: str) -> str | None:
        driver = self._carts()
        session = driver.session_of(cart_id) if driver is not None else None
        return str(session.session_id) if session is not None else None

    async def on_seen(self, seen: CategorySeen) -> None:
        """One sighting by a cart's camera (``source`` = cart id)."""
        cart_id = seen.source
        session_id = seen.session_id or self._session_id(cart_id)
        if session_id is None:  # no shopper on that cart (or not a cart): nothing to judge
            self.sightings.labels(use="no_session").inc()
            return
        if self.check.seen(cart_id, seen.category, session_id=session_id, ts_ms=seen.ts,
                           snapshot_id=seen.snapshot_id):
            self.sightings.labels(use="basket_check").inc()
        await self.triggers.handle_category(cart_id, category=seen.category)

    def scanned_units(self, cart_id: str, session_id: str) -> Mapping[str, int] | None:
        driver = self._carts()
        session = driver.session_of(cart_id) if driver is not None else None
        if session is None or session.session_id != session_id:
            return None
        catalog = self._catalog()
        units: collections.Counter[str] = collections.Counter()
        for sku, qty in session.items.items():
            item = catalog.items.get(sku) if catalog is not None else None
            if item is not None:
                units[self.category_map.get(item.category, item.category)] += qty
        return units

    async def sweep(self) -> list[Unscanned]:
        """Judge the pictures whose window is over; alarm on the unmatched ones."""
        found = self.check.due(self.ctx.clock.now_ms(), self.scanned_units)
        for a in found:
            self.unscanned.labels(category=a.category).inc()
            key = f"{a.cart_id}|{a.session_id}|{a.category}|{a.pictured}|{a.snapshot_id}"
            try:
                await self.ctx.emit_event(
                    "device_alarm", device_id=a.cart_id,
                    event_id="unscanned-" + hashlib.sha256(key.encode()).hexdigest()[:24],
                    data={"alarm": "unscanned_item", "category": a.category,
                          "session_id": a.session_id, "snapshot_id": a.snapshot_id,
                          "seen_ms": a.seen_ms, "pictured": a.pictured, "scanned": a.scanned,
                          "window_ms": self.check.window_ms})
            except AgentError as err:
                logger.error("unscanned-item alarm for cart %s not recorded: %s", a.cart_id, err)
            logger.info("cart %s: %s seen going in, %d of %d scanned", a.cart_id, a.category,
                        a.scanned, a.pictured)
            if self.remind is not None:
                try:
                    self.remind(a)
                except Exception:  # the alarm is recorded; a failed prompt must not stop sweeps
                    logger.exception("scan reminder for cart %s failed", a.cart_id)
        self.alarms = (self.alarms + found)[-100:]
        return found

    async def run(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            await self.sweep()
