"""Run drivers as supervised asyncio tasks: restart with backoff, isolate failures.

One failing device never stops the others: each driver runs in its own named task;
when ``run()`` raises, the error is logged and counted, the device is reported
unhealthy, and the driver is started again after an exponential backoff with jitter.
A driver that ran healthily for ``stable_s`` has its backoff reset.

A device whose options its family's model refuses (or whose family is unknown, or
whose driver cannot be built) is *refused*: it gets no task, the refusal is logged,
counted in ``storefleet_driver_refused_total{family, reason}`` and shown in
``health()`` (``state: refused`` and the error naming the field); the other devices
run (decision 0033).

Stopping is cancel and await: a device that is reconfigured (new options, same id)
gets its new driver only after the old driver's task has ended, so a serial port
opened with ``exclusive=True`` is closed before its replacement opens it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge

from edge_agent.drivers.base import (
    DRIVERS,
    BadOption,
    CommandRejected,
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverContext,
    DriverError,
)
from edge_agent.drivers.capabilities import Capability
from protocols.backoff import Backoff

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A driver's cleanup (closing its port) takes milliseconds; one still running after this
# is logged, and its replacement keeps waiting: two drivers on one port is worse.
STOP_WARN_S = 5.0


class DriverMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.restarts = Counter(
            "storefleet_driver_restarts", "driver restarts after a failure", ["family"],
            registry=registry,
        )
        self.refused = Counter(
            "storefleet_driver_refused",
            "devices not started: bad_option, bad_config, unknown_family, driver_bug",
            ["family", "reason"], registry=registry,
        )
        self.commands = Counter(
            "storefleet_driver_commands", "device commands by result (ok, failed, or the "
            "refusal's reason: unknown_command, bad_argument ...)", ["family", "result"],
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
    started: bool = False  # False while it waits for its predecessor to end
    backoff: Backoff = field(default_factory=lambda: Backoff(min_s=0.5, max_s=30.0))


@dataclass(frozen=True, slots=True)
class Refused:
    """A configured device that has no driver running, and why."""

    config: DeviceConfig
    reason: str  # bad_option | bad_config | unknown_family | driver_bug
    error: str
    field: str | None = None


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
        self._refused: dict[str, Refused] = {}
        # device id -> its tasks still ending: a driver cancelled while it waited for its
        # own predecessor ends at once, so a replacement waits for every one of them.
        self._stopping: dict[str, set[asyncio.Task[None]]] = {}
        self._stable_s = stable_s
        self._backoff = (backoff_min_s, backoff_max_s)

    # ---- configuration ------------------------------------------------------------------

    def configure(self, configs: Iterable[DeviceConfig]) -> list[str]:
        """Add drivers for new devices, stop removed or changed ones; returns the errors
        of devices refused by this call (each also logged, counted and in ``health()``)."""
        wanted = {c.device_id: c for c in configs}
        errors: list[str] = []
        for device_id in list(self._slots):
            if device_id not in wanted or wanted[device_id] != self._slots[device_id].config:
                self._stop(device_id)
        for device_id in list(self._refused):
            if device_id not in wanted or wanted[device_id] != self._refused[device_id].config:
                self._forget_refused(device_id)
        for device_id, config in wanted.items():
            if device_id in self._slots or device_id in self._refused:
                continue
            driver = self._build(config)
            if driver is None:
                errors.append(self._refused[device_id].error)
                continue
            lo, hi = self._backoff
            slot = _Slot(config=config, driver=driver, backoff=Backoff(min_s=lo, max_s=hi))
            self._slots[device_id] = slot
            slot.task = asyncio.create_task(
                self._supervise(slot, after=set(self._stopping.get(device_id, ()))),
                name=f"driver-{device_id}")
        return errors

    def _build(self, config: DeviceConfig) -> Driver | None:
        """The device's driver with its options validated, or None (refused)."""
        cls = DRIVERS.get(config.family)
        try:
            if cls is None:
                raise DriverError(config.device_id, f"no driver for family {config.family!r}")
            return cls(config, self._ctx)
        except BadOption as err:
            self._refuse(config, "bad_option", str(err), field=err.field)
        except DriverError as err:
            self._refuse(config, "unknown_family" if cls is None else "bad_config", str(err))
        except Exception as err:  # isolation: a driver bug refuses its device only
            logger.exception("driver %s/%s failed to start", config.family, config.device_id)
            self._refuse(config, "driver_bug", f"device {config.device_id}: "
                                               f"{type(err).__name__}: {err}")
        return None

    def _refuse(self, config: DeviceConfig, reason: str, error: str, *,
                field: str | None = None) -> None:
        self._refused[config.device_id] = Refused(config, reason, error, field)
        self._metrics.refused.labels(family=config.family, reason=reason).inc()
        self._metrics.up.labels(family=config.family, device_id=config.device_id).set(0)
        logger.error("device %s (%s) refused (%s): %s", config.device_id, config.family,
                     reason, error)

    def _forget_refused(self, device_id: str) -> None:
        refused = self._refused.pop(device_id)
        self._metrics.up.remove(refused.config.family, device_id)

    def _stop(self, device_id: str) -> None:
        """Cancel the device's task; whoever comes next for this id awaits its end."""
        slot = self._slots.pop(device_id)
        if slot.task is not None:
            task = slot.task
            task.cancel()
            self._stopping.setdefault(device_id, set()).add(task)

            def ended(done: asyncio.Task[None]) -> None:
                left = self._stopping.get(device_id, set())
                left.discard(done)
                if not left:
                    self._stopping.pop(device_id, None)

            task.add_done_callback(ended)
        self._metrics.up.remove(slot.config.family, device_id)
        self._metrics.alarms.remove(slot.config.family, device_id)

    async def aclose(self) -> None:
        tasks = [s.task for s in self._slots.values() if s.task is not None]
        tasks += [t for ending in self._stopping.values() for t in ending]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._slots.clear()
        self._stopping.clear()

    # ---- supervision ------------------------------------------------------------------------

    async def _supervise(self, slot: _Slot, *, after: set[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        family, device_id = slot.config.family, slot.config.device_id
        if after:  # the device's previous drivers: their port must be closed first
            _, pending = await asyncio.wait(after, timeout=STOP_WARN_S)
            if pending:
                logger.error("driver %s/%s: previous driver still stopping after %.0f s",
                             family, device_id, STOP_WARN_S)
                await asyncio.wait(pending)
        slot.started = True
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
        """Per-device health for the reported shadow; also refreshes the gauges. Each
        entry's ``state``: running, crashed (restarting), starting, or refused."""
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
            state = "crashed" if slot.crashed else "running" if slot.started else "starting"
            out[device_id] = {
                "family": slot.config.family,
                "model": slot.config.model,
                "online": online,
                "state": state,
                "last_seen_ms": h.last_seen_ms,
                "alarms": list(h.alarms),
                "restarts": slot.restarts,
                "last_error": slot.last_error,
                **dict(h.details),
            }
        for device_id, refused in self._refused.items():
            out[device_id] = {
                "family": refused.config.family,
                "model": refused.config.model,
                "online": False,
                "state": "refused",
                "last_seen_ms": None,
                "alarms": [],
                "restarts": 0,
                "last_error": refused.error,
                "refused_reason": refused.reason,
                "refused_field": refused.field,
            }
        return out

    def refused(self) -> dict[str, Refused]:
        return dict(self._refused)

    def families_online(self) -> list[str]:
        return sorted({v["family"] for v in self.health().values() if v["online"]})

    def device_ids(self) -> list[str]:
        """Devices with a driver (refused ones have none)."""
        return list(self._slots)

    def driver(self, device_id: str) -> Driver | None:
        """The running driver of a device (tests, diagnostics); agent modules find drivers
        by capability with ``find``."""
        slot = self._slots.get(device_id)
        return None if slot is None else slot.driver

    def running(self) -> list[Driver]:
        return [slot.driver for slot in self._slots.values()]

    def find(self, capability: Capability[T]) -> list[T]:
        """The drivers that provide ``capability`` (``drivers.capabilities``), in
        configuration order: ``supervisor.find(LABEL_SINK)``."""
        return [slot.driver for slot in self._slots.values()  # type: ignore[misc]
                if capability.provided_by(slot.driver)]

    def configs(self) -> list[DeviceConfig]:
        return [slot.config for slot in self._slots.values()]

    async def command(self, device_id: str, name: str, args: Mapping[str, Any], *,
                      reason: str | None = None) -> dict[str, Any]:
        slot = self._slots.get(device_id)
        if slot is None:
            refused = self._refused.get(device_id)
            if refused is not None:
                raise CommandRejected(device_id, f"device refused: {refused.error}",
                                      reason="device_refused")
            raise CommandRejected(device_id, "no such device", reason="no_such_device")
        family = slot.config.family
        try:
            result = await slot.driver.handle_command(name, args, reason=reason)
        except CommandRejected as err:
            self._metrics.commands.labels(family=family, result=err.reason).inc()
            logger.info("command %s to %s refused: %s", name, device_id, err.detail)
            raise
        except Exception:
            self._metrics.commands.labels(family=family, result="failed").inc()
            raise
        self._metrics.commands.labels(family=family, result="ok").inc()
        return result
