"""Live updates to cart screens: one bounded queue per open WebSocket, grouped by cart.

``push`` never blocks and never awaits: the trigger path calls it inline. A screen that
stops reading loses its oldest messages (counted), not the agent's memory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from protocols.clock import Clock

QUEUE_MAX = 64  # a screen more than 64 messages behind is not being looked at


class ScreenHub:
    def __init__(self, *, clock: Clock, registry: CollectorRegistry) -> None:
        self.clock = clock
        self._screens: dict[str, set[asyncio.Queue[str]]] = {}
        self.sockets = Gauge("storefleet_cartscreen_sockets", "open cart-screen WebSockets",
                             registry=registry)
        self.pushed = Counter("storefleet_cartscreen_pushed", "messages pushed to screens",
                              ["type"], registry=registry)
        self.dropped = Counter("storefleet_cartscreen_dropped",
                               "messages dropped for slow screens", registry=registry)
        # per message type, looked up once: ``labels()`` per push is a lock and a key
        self._pushed_by_type: dict[str, Counter] = {}

    @contextmanager
    def subscribe(self, cart_id: str) -> Iterator[asyncio.Queue[str]]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE_MAX)
        self._screens.setdefault(cart_id, set()).add(queue)
        self.sockets.inc()
        try:
            yield queue
        finally:
            self.sockets.dec()
            screens = self._screens.get(cart_id)
            if screens is not None:
                screens.discard(queue)
                if not screens:
                    del self._screens[cart_id]

    def watching(self, cart_id: str) -> bool:
        return bool(self._screens.get(cart_id))

    def push(self, cart_id: str, type_: str, data: dict[str, Any]) -> int:
        """Send to every screen of ``cart_id``; returns how many screens got it."""
        screens = self._screens.get(cart_id)
        if not screens:
            return 0
        # The shape of protocols.triggers.CartScreenPush, built directly: this runs for
        # every located scan report, and a pydantic round trip per push is measurable.
        text = json.dumps({"v": 1, "type": type_, "cart_id": cart_id, "ts": self.clock.now_ms(),
                           "data": data}, separators=(",", ":"), ensure_ascii=False)
        for queue in screens:
            if queue.full():
                queue.get_nowait()
                self.dropped.inc()
            queue.put_nowait(text)
        counter = self._pushed_by_type.get(type_)
        if counter is None:
            counter = self._pushed_by_type[type_] = self.pushed.labels(type=type_)
        counter.inc()
        return len(screens)
