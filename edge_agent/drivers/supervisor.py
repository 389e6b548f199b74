"""Run drivers as supervised asyncio tasks: restart with backoff, isolate failures.

One failing device never stops the others: each driver runs in its own named task;
when ``run()`` raises, the error is logged and counted, the device is reported
unhealthy, and the driver is started again after an exponential backoff with jitter.
A driver that ran healthily for ``stable_s`` has its backoff reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from edge_agent.backoff import Backoff
from edge_agent.drivers.base import (
    DRIVERS,
    CommandRejected,
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverContext,
    DriverError,
)

logger = logging.getLogger(__name__)


class DriverMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.restarts = Counter(
            "storefleet_driver_restarts", "driver restarts after a failure", ["family"],
            registry=registry,
        )
        self.up = Gauge(
            "storefleet_device_up", "1 while the device is healthy", ["family", "device_id"],
            registry=registry,
        )
        self.alarms = Gauge(
            "storefleet_device_alarms", "active alarms of a device", ["family", "device_id"],
            registry=registry,
        )


@dataclass
class _Slot:
    config: DeviceConfig
    driver: Driver
    task: asyncio.Task[None] | None = None
    last_error: str | None = None
    restarts: int = 0
    crashed: bool = False
    backoff: Backoff = field(default_factory=lambda: Backoff(min_s=0.5, max_s=30.0))


class DriverSupervisor:
    def __init__(
        self,
        ctx: DriverContext,
        *,
        metrics: DriverMetrics | None = None,
        stable_s: float = 30.0,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self._ctx = ctx
        self._metrics = metrics or DriverMetrics(ctx.registry)
        self._slots: dict[str, _Slot] = {}
        self._stable_s = stable_s
        self._backoff = (backoff_min_s, backoff_max_s)

    # ---- configuration ------------------------------------------------------------------

    def configure(self, configs: Iterable[DeviceConfig]) -> list[str]:
        """Add drivers for new devices, stop removed ones; returns config errors."""
        wanted = {c.device_id: c for c in configs}
        errors: list[str] = []
        for device_id in list(self._slots):
            if device_id not in wanted or wanted[device_id] != self._slots[device_id].config:
                self._stop(device_id)
        for device_id, config in wanted.items():
            if device_id in self._slots:
                continue
            cls = DRIVERS.get(config.family)
            if cls is None:
                errors.append(f"{device_id}: no driver for family {config.family!r}")
                continue
            try:
                driver = cls(config, self._ctx)
            except DriverError as err:
                errors.append(str(err))
                continue
            lo, hi = self._backoff
            slot = _Slot(config=config, driver=driver, backoff=Backoff(min_s=lo, max_s=hi))
            self._slots[device_id] = slot
            slot.task = asyncio.create_task(self._supervise(slot), name=f"driver-{device_id}")
        return errors

    def _stop(self, device_id: str) -> None:
        slot = self._slots.pop(device_id)
        if slot.task is not None:
            slot.task.cancel()
        self._metrics.up.remove(slot.config.family, device_id)
        self._metrics.alarms.remove(slot.config.family, device_id)

    async def aclose(self) -> None:
        tasks = [s.task for s in self._slots.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._slots.clear()

    # ---- supervision ------------------------------------------------------------------------

    async def _supervise(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        family, device_id = slot.config.family, slot.config.device_id
        while True:
            started = loop.time()
            slot.crashed = False
            try:
                await slot.driver.run()
                raise DriverError(device_id, "driver returned; drivers run until cancelled")
            except asyncio.CancelledError:
                raise
            except Exception as err:  # isolation: any driver bug is contained
                slot.crashed = True
                slot.last_error = f"{type(err).__name__}: {err}"
                slot.restarts += 1
                self._metrics.restarts.labels(family=family).inc()
                self._metrics.up.labels(family=family, device_id=device_id).set(0)
                if loop.time() - started >= self._stable_s:
                    slot.backoff.reset()
                delay = slot.backoff.next()
                logger.warning("driver %s/%s failed (%s); restart in %.1f s",
                               family, device_id, slot.last_error, delay)
                await asyncio.sleep(delay)

    # ---- health and commands -------------------------------------------------------------------

    def health(self) -> dict[str, dict[str, Any]]:
        """Per-device health for the reported shadow; also refreshes the gauges."""
        out: dict[str, dict[str, Any]] = {}
        for device_id, slot in self._slots.items():
            try:
                h = slot.driver.health()
            except Exception as err:  # a broken health() must not hide others
                h = DeviceHealth(online=False, details={"health_error": str(err)})
            online = h.online and not slot.crashed
            self._metrics.up.labels(family=slot.config.family, device_id=device_id).set(
                1 if online else 0
            )
            self._metrics.alarms.labels(family=slot.config.family, device_id=device_id).set(
                len(h.alarms)
            )
            out[device_id] = {
                "family": slot.config.family,
                "model": slot.config.model,
                "online": online,
                "last_seen_ms": h.last_seen_ms,
                "alarms": list(h.alarms),
                "restarts": slot.restarts,
                "last_error": slot.last_error,
                **dict(h.details),
            }
        return out

    def families_online(self) -> list[str]:
        return sorted({v["family"] for v in self.health().values() if v["online"]})

    def device_ids(self) -> list[str]:
        return list(self._slots)

    def driver(self, device_id: str) -> Driver | None:
        """The running driver of a device, for agent modules that use its in-process API
        (e.g. coupon triggers -> the cart driver's ``send_screen``)."""
        slot = self._slots.get(device_id)
        return None if slot is None else slot.driver

    def configs(self) -> list[DeviceConfig]:
        return [slot.config for slot in self._slots.values()]

    async def command(self, device_id: str, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        slot = self._slots.get(device_id)
        if slot is None:
            raise CommandRejected(device_id, "no such device")
        return await slot.driver.handle_command(name, args)
