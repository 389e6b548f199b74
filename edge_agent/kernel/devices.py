"""Driver-managed devices as the kernel runs them: which devices are configured (the
configuration file's, then the desired shadow's ``devices``, winning by id), their health
as gauges, telemetry and the reported shadow, their commands, and their part of the birth.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from edge_agent.commands import CommandError, CommandRefused
from edge_agent.drivers.base import CommandRejected, DeviceConfig, DriverError
from edge_agent.drivers.context import AgentDriverContext
from edge_agent.drivers.supervisor import DriverSupervisor
from edge_agent.localbus.registry import DeviceRegistry
from edge_agent.metrics import AgentMetrics
from protocols.messages import DEVICE_TEXT_MAX, DeviceInfo

logger = logging.getLogger(__name__)

AGENT = "agent"  # device id and kind of the agent's own telemetry
# Health fields that describe the device rather than measure it.
_NOT_TELEMETRY = frozenset({"family", "model", "last_error", "online", "alarms"})


class DeviceHub:
    def __init__(
        self,
        *,
        configured: tuple[DeviceConfig, ...],
        drivers: DriverSupervisor,
        local: DeviceRegistry,
        context: AgentDriverContext,
        metrics: AgentMetrics,
        request_rebirth: Callable[[], None],
        report: Callable[[], Awaitable[None]],
        signature: Callable[[], object],
        interval_s: float,
        own_readings: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self._configured = configured
        self.drivers = drivers
        self._local = local
        self._context = context
        self._metrics = metrics
        self._request_rebirth = request_rebirth
        self._report = report  # report the agent's shadow now
        self._signature = signature  # alarms and task states: a change is reported
        self._interval_s = interval_s
        self._own_readings = own_readings  # the agent's own (outbox), as device "agent"
        self._desired: dict[str, Any] = {}
        self.live = False  # configure() needs the running loop
        self._health_sig: dict[str, Any] = {}
        self._other_sig: object = None

    def configs(self) -> list[DeviceConfig]:
        """Configured devices: the config file's, then the desired shadow's (wins by id)."""
        merged = {c.device_id: c for c in self._configured}
        for device_id, doc in self._desired.items():
            merged[device_id] = DeviceConfig.from_dict({"id": device_id, **doc})
        return list(merged.values())

    def set_desired(self, value: Any) -> None:
        """The desired shadow's ``devices`` (already checked by ``shadow.check_devices``)."""
        self._desired = dict(value)
        if self.live:
            self.configure()

    def configure(self) -> None:
        """Start, restart or stop drivers to match ``configs()``; a bad device is refused
        alone (decision 0033), counted and logged."""
        self.live = True
        try:
            configs = self.configs()
        except DriverError as err:
            self._metrics.bad_payloads.labels(source="config", reason="bad_device").inc()
            logger.error("device configuration refused: %s", err)
            return
        for error in self.drivers.configure(configs):
            self._metrics.bad_payloads.labels(source="config", reason="bad_device").inc()
            logger.error("device not started: %s", error)
        self._request_rebirth()  # the birth lists driver-managed devices

    async def aclose(self) -> None:
        self.live = False
        await self.drivers.aclose()

    async def command(self, target: str, name: str, args: dict[str, Any], *,
                      reason: str | None = None) -> dict[str, Any]:
        """A cloud command for a device (``cmd/<device id>``), with the sender's reason."""
        try:
            return await self.drivers.command(target, name, args, reason=reason)
        except CommandRejected as err:
            raise CommandRefused(err.detail) from err
        except DriverError as err:
            raise CommandError(err.detail) from err

    def birth_devices(self) -> list[DeviceInfo]:
        """Local-bus devices plus driver-managed ones (a driver's entry wins by id)."""
        devices = {d.device_id: d for d in self._local.snapshot()}
        for device_id, h in self.drivers.health().items():
            devices[device_id] = DeviceInfo(
                device_id=device_id,
                kind=h["family"],
                online=bool(h["online"]),
                model=h.get("model"),  # bounded when configured (DeviceConfig)
                fw=_firmware_version(h),
                last_seen=h.get("last_seen_ms"),
            )
        return [devices[k] for k in sorted(devices)]

    def _telemetry(self, health: dict[str, dict[str, Any]]) -> None:
        """Every driver-managed device reports its health readings (battery, RSSI, labels
        acknowledged, paper state ...) as telemetry, so the cloud sees every family's
        telemetry whether or not the device speaks MQTT itself."""
        for device_id, h in health.items():
            values = {k: v for k, v in h.items()
                      if isinstance(v, bool | int | float | str) and k not in _NOT_TELEMETRY}
            values["online"] = bool(h["online"])
            values["alarms"] = len(h["alarms"])
            self._context.telemetry(str(h["family"]), device_id, values)
        if self._own_readings is not None:  # the cloud's fleet gauges read these (0054)
            self._context.telemetry(AGENT, AGENT, self._own_readings())

    async def watch(self) -> None:
        """Refresh driver gauges and telemetry; on a change that a reader acts on, report
        the shadow, and rebirth when a device went on- or offline."""
        while True:
            await asyncio.sleep(self._interval_s)
            health = self.drivers.health()
            self._telemetry(health)
            # last_seen and live readings change all the time; these are what one acts on.
            sig = {k: (v["online"], tuple(v["alarms"]), v["restarts"], v["last_error"],
                       _firmware_version(v)) for k, v in health.items()}
            other = self._signature()
            if sig == self._health_sig and other == self._other_sig:
                continue
            self._other_sig = other
            # on- or offline, or a new firmware (a rollout's result): the birth carries them
            births_differ = ({k: (v[0], v[4]) for k, v in sig.items()}
                             != {k: (v[0], v[4]) for k, v in self._health_sig.items()})
            self._health_sig = sig
            if births_differ:
                self._request_rebirth()
            await self._report()


def _firmware_version(health: dict[str, Any]) -> str | None:
    """The firmware a driver reports its device runs (``firmware_version``), if any."""
    version = health.get("firmware_version")
    return version[:DEVICE_TEXT_MAX] if isinstance(version, str) and version else None
