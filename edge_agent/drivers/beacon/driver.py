"""The BLE beacon driver: one scanner (family ``beacon``), many beacons it hears.

Options (``[[agent.devices]] options = {...}`` or the desired shadow):

==================  ===========================================================
``backend``         ``bleak`` (default, a real radio) or ``replay``
``adapter``         BlueZ adapter, e.g. ``hci0`` (bleak)
``recording``       JSONL of advertisements (replay); ``speed``, ``loop``, ``follow``
``installed``       beacons that must be heard: keys, or ``{key, name}`` tables
``silent_after_s``  an installed beacon unheard this long raises ``beacon_silent`` (60)
``check_every_s``   silence check / telemetry period (5)
``max_beacons``     identities tracked at most (1024)
==================  ===========================================================

Events: ``device_alarm`` ``{alarm: "beacon_silent", beacon, active, last_seen_ms}``,
once when an installed beacon goes silent and once (``active: false``) when it is heard
again. Metrics: ``storefleet_beacon_adverts_total{result}`` (beacon / ignored / untracked
/ bad_record) and ``storefleet_beacons_silent{device_id}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge

from edge_agent.drivers.base import (
    CommandRejected,
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverContext,
    DriverError,
    register,
)
from edge_agent.drivers.beacon.inventory import BeaconInventory, Transition
from edge_agent.drivers.beacon.transport import (
    Backend,
    BeaconScanner,
    RawAdvertisement,
    ScanBackend,
)
from edge_agent.metrics import registry_scoped
from protocols.ble import parse_advertisement

logger = logging.getLogger(__name__)


class BeaconMetrics:
    def __init__(self, ctx: DriverContext) -> None:
        self.adverts = Counter(
            "storefleet_beacon_adverts", "BLE advertisements by outcome", ["result"],
            registry=ctx.registry,
        )
        self.silent = Gauge(
            "storefleet_beacons_silent", "installed beacons not heard within the bound",
            ["device_id"], registry=ctx.registry,
        )


def _metrics(ctx: DriverContext) -> BeaconMetrics:
    # one set per registry: several scanners of one agent share it
    return registry_scoped(ctx.registry, "beacon", lambda _: BeaconMetrics(ctx))


@register
class BeaconDriver(Driver):
    family = "beacon"

    def __init__(self, config: DeviceConfig, ctx: DriverContext, *,
                 backend: ScanBackend | None = None) -> None:
        super().__init__(config, ctx)
        opts = config.options
        try:
            self.silent_after_ms = int(float(opts.get("silent_after_s", 60)) * 1000)
            self.check_every_s = float(opts.get("check_every_s", 5.0))
            max_beacons = int(opts.get("max_beacons", 1024))
            installed = [_installed(item) for item in opts.get("installed", [])]
            kind = Backend(str(opts.get("backend", "bleak")))
        except (ValueError, TypeError, KeyError) as err:
            raise DriverError(config.device_id, f"bad beacon options: {err}") from err
        self.metrics = _metrics(ctx)
        self.inventory = BeaconInventory(installed=installed, max_beacons=max_beacons,
                                         started_ms=ctx.clock.now_ms())
        backend_options = {k: v for k, v in opts.items() if k in
                           ("adapter", "scanning_mode", "recording", "speed", "loop", "follow")}
        self.scanner = BeaconScanner(
            self._on_advert,
            backend=backend if backend is not None else kind,
            device_id=config.device_id,
            on_bad_record=self._on_bad_record,
            **backend_options,
        )
        self._scanning = False
        self._pending: list[Transition] = []

    # ---- running ------------------------------------------------------------------------

    async def run(self) -> None:
        checker = asyncio.create_task(self._check_loop(), name=f"beacon-check-{self.device_id}")
        self._scanning = True
        try:
            await self.scanner.run()
        finally:
            self._scanning = False
            checker.cancel()
            await asyncio.gather(checker, return_exceptions=True)

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_every_s)
            await self.check()

    async def check(self) -> list[Transition]:
        """Silence check now: emit one ``device_alarm`` per transition; report telemetry."""
        now = self.ctx.clock.now_ms()
        transitions = self.inventory.check_silence(now_ms=now,
                                                   silent_after_ms=self.silent_after_ms)
        for t in transitions:
            await self.ctx.emit_event("device_alarm", device_id=self.device_id, data={
                "alarm": "beacon_silent",
                "beacon": t.key,
                "active": t.silent,
                "last_seen_ms": t.last_seen_ms,
            })
            log = logger.warning if t.silent else logger.info
            log("beacon %s %s", t.key, "went silent" if t.silent else "heard again")
        silent = self.inventory.silent_keys()
        self.metrics.silent.labels(device_id=self.device_id).set(len(silent))
        self.ctx.telemetry("beacon", self.device_id, {
            "beacons_heard": sum(1 for b in self.inventory.beacons.values()
                                 if b.last_seen_ms is not None),
            "beacons_silent": len(silent),
        })
        return transitions

    def _on_advert(self, advert: RawAdvertisement) -> None:
        frames = parse_advertisement(advert.raw)
        if not frames:
            self.metrics.adverts.labels(result="ignored").inc()
            return
        now = self.ctx.clock.now_ms()
        for frame in frames:
            tracked = self.inventory.observe(advert.address, advert.rssi, frame, now_ms=now)
            self.metrics.adverts.labels(result="beacon" if tracked else "untracked").inc()

    def _on_bad_record(self, detail: str) -> None:
        self.metrics.adverts.labels(result="bad_record").inc()
        logger.debug("beacon %s: bad recorded advertisement: %s", self.device_id, detail)

    # ---- health and commands -------------------------------------------------------------

    def health(self) -> DeviceHealth:
        silent = self.inventory.silent_keys()
        return DeviceHealth(
            online=self._scanning,
            last_seen_ms=self.inventory.last_seen_ms(),
            alarms=("beacon_silent",) if silent else (),
            details={
                "beacons_known": len(self.inventory.beacons),
                "beacons_installed": sum(1 for b in self.inventory.beacons.values()
                                         if b.installed),
                "beacons_silent": silent,
            },
        )

    async def handle_command(self, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        if name == "inventory":
            return {"beacons": [b.public() for b in self.inventory.beacons.values()]}
        if name == "check":
            return {"transitions": len(await self.check())}
        raise CommandRejected(self.device_id, f"unknown command {name!r}")


def _installed(item: Any) -> tuple[str, str | None]:
    if isinstance(item, str):
        return item, None
    if isinstance(item, Mapping):
        return str(item["key"]), None if item.get("name") is None else str(item["name"])
    raise ValueError(f"installed beacon {item!r} is neither a key nor a table")
