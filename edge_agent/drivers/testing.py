"""In-package fake of ``DriverContext`` for driver tests (httpx-transport style:
a real object that records, not a mock)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from edge_agent.drivers.base import LocalHandler
from protocols.clock import Clock, SystemClock
from protocols.ids import uuid7


@dataclass
class EmittedEvent:
    id: str
    kind: str
    device_id: str
    data: dict[str, Any]


@dataclass
class FakeContext:
    store_id: str = "S001"
    clock: Clock = field(default_factory=SystemClock)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    data_dir: Path | None = None
    events: list[EmittedEvent] = field(default_factory=list)
    samples: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    published: list[tuple[str, bytes, int, bool]] = field(default_factory=list)
    handlers: dict[str, list[LocalHandler]] = field(default_factory=dict)
    new_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def emit_event(self, kind: str, *, device_id: str, data: Mapping[str, Any],
                         event_id: str | None = None) -> str:
        event_id = event_id or uuid7(self.clock.now_ms())
        if all(e.id != event_id for e in self.events):  # idempotent like the outbox
            self.events.append(EmittedEvent(event_id, kind, device_id, dict(data)))
            self.new_event.set()
        return event_id

    def telemetry(self, device_kind: str, device_id: str, values: Mapping[str, Any]) -> None:
        self.samples.append((device_kind, device_id, dict(values)))

    async def publish_local(self, topic: str, payload: bytes, *, qos: int = 1,
                            retain: bool = False) -> None:
        self.published.append((topic, payload, qos, retain))

    def on_local(self, device_kind: str, handler: LocalHandler) -> None:
        self.handlers.setdefault(device_kind, []).append(handler)

    def off_local(self, device_kind: str, handler: LocalHandler) -> None:
        if handler in self.handlers.get(device_kind, []):
            self.handlers[device_kind].remove(handler)

    async def deliver_local(self, device_kind: str, device_id: str, type_: str,
                            payload: bytes) -> None:
        """Feed a local-bus message to the drivers that subscribed (for tests)."""
        for handler in self.handlers.get(device_kind, []):
            await handler(device_id, type_, payload)

    async def wait_events(
        self, n: int, timeout: float = 5.0  # noqa: ASYNC109 - a test helper's own deadline
    ) -> list[EmittedEvent]:
        async def wait() -> None:
            while len(self.events) < n:
                self.new_event.clear()
                await self.new_event.wait()

        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
        # cancellation that races with completion (the task then never stops).
        async with asyncio.timeout(timeout):
            await wait()
        return self.events
