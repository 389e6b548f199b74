"""Serial barcode scanner driver (AIM ID prefix + CR suffix, ``protocols.aim``).

Options (``ScannerOptions``): ``port`` (+ ``baudrate``), ``queue_size`` (default 64).
Capability: ``Scanner``. Each scan goes to the
callbacks registered with ``on_scan`` and to every ``scans()`` iterator (the POS
reads them through ``PosPeripherals``). A consumer that does not keep up loses its
oldest scans, counted, rather than growing memory. Scans are not business events: a
scan becomes a sale line only when the POS decides so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from prometheus_client import Counter
from pydantic import Field

from edge_agent.drivers.base import (
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverContext,
    register,
)
from edge_agent.drivers.capabilities import Scanner
from edge_agent.drivers.links import SerialOptions, link_metrics, open_link
from edge_agent.metrics import registry_scoped
from protocols import aim

logger = logging.getLogger(__name__)

ScanCallback = Callable[[aim.Scan], Awaitable[None]]


def _scan_counter(ctx: DriverContext) -> Counter:
    return registry_scoped(ctx.registry, "scans", lambda r: Counter(
        "storefleet_scans", "barcodes read", ["device", "symbology"], registry=r))


class ScannerOptions(SerialOptions):
    queue_size: int = Field(64, ge=1, le=10_000)  # scans a slow reader may fall behind by


@register
class ScannerDriver(Driver, Scanner):
    family = "scanner"
    Options = ScannerOptions
    options: ScannerOptions

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        self._queue_size = self.options.queue_size
        self._metrics = link_metrics(ctx.registry)
        self._scans = _scan_counter(ctx)
        self._callbacks: list[ScanCallback] = []
        self._queues: set[asyncio.Queue[aim.Scan]] = set()
        self._online = False
        self._last_seen: int | None = None
        self.last_scan: aim.Scan | None = None
        self._decoder = aim.ScanDecoder()

    def on_scan(self, callback: ScanCallback) -> None:
        self._callbacks.append(callback)

    async def scans(self) -> AsyncIterator[aim.Scan]:
        queue: asyncio.Queue[aim.Scan] = asyncio.Queue(self._queue_size)
        self._queues.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.discard(queue)

    async def run(self) -> None:
        o = self.options
        link = await open_link(self.device_id, o, max_buffer=4096)
        self._online = True
        self._decoder = aim.ScanDecoder()
        dropped_seen = 0
        try:
            while True:
                data = await link.read()
                if link.dropped_bytes > dropped_seen:
                    self._metrics.dropped.labels(device=self.device_id).inc(
                        link.dropped_bytes - dropped_seen)
                    dropped_seen = link.dropped_bytes
                for item in self._decoder.feed(data):
                    if isinstance(item, aim.Rejected):
                        self._metrics.rejected.labels(device=self.device_id,
                                                      reason=item.reason).inc()
                    else:
                        await self._deliver(item)
        finally:
            self._online = False
            await link.close()

    async def _deliver(self, scan: aim.Scan) -> None:
        self.last_scan = scan
        self._last_seen = self.ctx.clock.now_ms()
        self._scans.labels(device=self.device_id, symbology=scan.symbology).inc()
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
                self._metrics.rejected.labels(device=self.device_id, reason="consumer_slow").inc()
            queue.put_nowait(scan)
        for callback in self._callbacks:
            try:
                await callback(scan)
            except Exception:  # a POS callback bug must not kill the scanner
                self._metrics.rejected.labels(device=self.device_id,
                                              reason="callback_error").inc()
                logger.exception("%s: scan callback failed", self.device_id)

    def health(self) -> DeviceHealth:
        details: dict[str, Any] = {}
        if self.last_scan is not None:
            details["last_symbology"] = self.last_scan.symbology
        return DeviceHealth(online=self._online, last_seen_ms=self._last_seen, details=details)
