"""Device shadows: ``shadow/{device_id}/desired`` reaches the device's running driver
(decision 0037).

A driver declares the keys it applies with ``@desired(key, Model)``
(``drivers/base.py``). For each device the kernel keeps the latest desired version and
hands every key to the driver that runs the device now:

- a key the driver does not declare is *unsupported*: reported, counted, logged, never
  silently dropped;
- a value its model (or the driver) refuses is *rejected* with the reason; the other
  keys still apply (they are independent settings of one device, unlike the agent's
  shadow, which is all or nothing);
- what the driver says is now in effect is reported as ``applied``; ``delta`` lists
  the desired keys whose applied value differs.

The report (``shadow/{device_id}/reported``, a ``DeviceReported`` state with the
desired version) goes out after each new version, again when the same version comes
back (the retained desired arrives on every connect, which heals a lost report), and
whenever the device's driver changes (configured later, reconfigured, removed): a new
driver instance starts empty, so the desired state is applied to it again. Desired
state is not persisted here: it is retained at the broker, and the drivers that need
it offline keep their own copy (the audio cache).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ValidationError

from edge_agent.drivers.base import Driver, DriverError, first_error
from edge_agent.drivers.supervisor import DriverSupervisor
from edge_agent.errors import LinkError
from edge_agent.metrics import AgentMetrics, registry_scoped
from edge_agent.uplink.publisher import Publish
from protocols import topics
from protocols.clock import Clock
from protocols.codec import decode, encode
from protocols.errors import DecodeError
from protocols.messages import ShadowDesired, ShadowReported
from protocols.shadow_keys import (
    DESIRED_MAX_DEPTH,
    DEVICE_DESIRED_MAX_BYTES,
    DeviceReported,
    depth,
    encoded_size,
)

logger = logging.getLogger(__name__)


def _counters(registry: CollectorRegistry) -> tuple[Counter, Counter]:
    return (Counter("storefleet_agent_device_shadow_keys_total",
                    "device desired keys handled, by result (applied, unsupported, "
                    "rejected, no_driver)", ["result"], registry=registry),
            Counter("storefleet_agent_device_shadow_report_failures_total",
                    "device reported shadows the uplink did not take", registry=registry))


@dataclass(slots=True)
class _Device:
    desired: ShadowDesired
    driver: Driver | None = None  # the driver instance the version was applied to
    applied_version: int | None = None
    report: DeviceReported = field(default_factory=DeviceReported)


class DeviceShadows:
    def __init__(self, *, store_id: str, drivers: DriverSupervisor, clock: Clock,
                 metrics: AgentMetrics, interval_s: float = 1.0) -> None:
        self._store_id = store_id
        self._drivers = drivers
        self._clock = clock
        self._metrics = metrics
        self._keys, self._report_failures = registry_scoped(metrics.registry,
                                                            "device_shadow", _counters)
        self._interval_s = interval_s  # how soon a configured or replaced driver catches up
        self._devices: dict[str, _Device] = {}
        self._link: Publish | None = None

    def reported(self, device_id: str) -> DeviceReported | None:
        """The last report for a device (tests, diagnostics)."""
        device = self._devices.get(device_id)
        return None if device is None else device.report

    async def handle_desired(self, device_id: str, payload: bytes, link: Publish) -> None:
        self._link = link
        try:
            desired = decode(payload, ShadowDesired)
        except DecodeError as err:
            self._bad(device_id, err.reason, str(err))
            return
        if (size := encoded_size(desired.state)) > DEVICE_DESIRED_MAX_BYTES:
            self._bad(device_id, "shadow_too_large",
                      f"v{desired.version}: {size} bytes > {DEVICE_DESIRED_MAX_BYTES}")
            return
        if (deep := depth(desired.state)) > DESIRED_MAX_DEPTH:
            self._bad(device_id, "shadow_too_deep",
                      f"v{desired.version}: depth {deep} > {DESIRED_MAX_DEPTH}")
            return
        device = self._devices.get(device_id)
        if device is not None and desired.version < device.desired.version:
            logger.debug("device %s: desired v%d older than v%d", device_id, desired.version,
                         device.desired.version)
            return
        if device is None or desired.version > device.desired.version:
            device = self._devices[device_id] = _Device(desired=desired)
        await self._reconcile(device_id, device, link)

    async def run(self) -> None:
        """Apply the desired state again to a device whose driver changed (configured
        after its desired state came, reconfigured, restarted as a new instance, gone)."""
        while True:
            await asyncio.sleep(self._interval_s)
            link = self._link
            if link is None:
                continue
            for device_id, device in list(self._devices.items()):
                if self._drivers.driver(device_id) is not device.driver:
                    await self._reconcile(device_id, device, link)

    async def _reconcile(self, device_id: str, device: _Device, link: Publish) -> None:
        driver = self._drivers.driver(device_id)
        version = device.desired.version
        if device.applied_version != version or device.driver is not driver:
            device.driver, device.applied_version = driver, version
            device.report = await self._apply(device_id, driver, device.desired.state)
            logger.info("device %s: desired v%d applied %s, delta %s", device_id, version,
                        sorted(device.report.applied), device.report.delta)
        reported = ShadowReported(version=version, ts=self._clock.now_ms(),
                                  state=device.report.model_dump(mode="json"))
        try:
            await link.publish(topics.shadow_reported(self._store_id, device_id),
                               encode(reported), qos=1)
        except LinkError as err:  # the retained desired comes back on reconnect: re-reported
            self._report_failures.inc()
            logger.warning("device %s: shadow v%d not reported: %s", device_id, version, err)

    async def _apply(self, device_id: str, driver: Driver | None,
                     state: dict[str, Any]) -> DeviceReported:
        if driver is None:
            self._keys.labels(result="no_driver").inc(len(state))
            if state:
                logger.warning("device %s: desired keys %s wait for a driver", device_id,
                               sorted(state))
            return DeviceReported(delta=sorted(state), error="no running driver for this device")
        report = DeviceReported()
        declared = type(driver).desired_keys
        report.unsupported = sorted(set(state) - set(declared))
        if report.unsupported:
            self._keys.labels(result="unsupported").inc(len(report.unsupported))
            logger.warning("device %s (%s): desired keys %s unsupported by its driver",
                           device_id, driver.config.family, report.unsupported)
        parsed: dict[str, BaseModel] = {}
        for key in sorted(set(state) & set(declared)):  # every value checked before any apply
            try:
                parsed[key] = declared[key].value.model_validate(state[key])
            except ValidationError as err:
                where, msg = first_error(err)
                report.rejected[key] = f"{where}: {msg}"
        for key, value in parsed.items():
            try:
                result: Any = await declared[key].handler(driver, value)
            except DriverError as err:
                report.rejected[key] = err.detail
                continue
            except Exception as err:  # isolation: a driver bug rejects its key only
                logger.exception("device %s: applying desired %s failed", device_id, key)
                report.rejected[key] = f"driver error: {type(err).__name__}: {err}"
                continue
            self._keys.labels(result="applied").inc()
            # The desired document as sent when the driver applied exactly it (so the
            # cloud's comparison sees it equal), else what is in effect instead.
            report.applied[key] = (state[key] if result == value else
                                   None if result is None else result.model_dump(mode="json"))
        if report.rejected:
            self._keys.labels(result="rejected").inc(len(report.rejected))
            logger.warning("device %s: desired values rejected: %s", device_id, report.rejected)
        report.delta = sorted(k for k in state
                              if k not in report.applied or report.applied[k] != state[k])
        return report

    def _bad(self, device_id: str, reason: str, detail: str) -> None:
        self._metrics.bad_payloads.labels(source="cloud", reason=reason).inc()
        logger.warning("device %s: shadow desired rejected: %s", device_id, detail)
