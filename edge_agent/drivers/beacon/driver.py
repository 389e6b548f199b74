"""The BLE beacon driver: one scanner (family ``beacon``), many beacons it hears.

Options (``BeaconOptions``; ``[[agent.devices]] options = {...}`` or the desired shadow):

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
from typing import Any

from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from edge_agent.drivers.base import (
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverContext,
    DriverOptions,
    command,
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


class InstalledBeacon(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1)
    name: str | None = None


class BeaconOptions(DriverOptions):
    backend: Backend = Backend.BLEAK
    adapter: str | None = None  # bleak: BlueZ adapter, e.g. hci0
    scanning_mode: str = "active"  # bleak
    recording: str | None = None  # replay: JSONL of advertisements
    speed: float = 1.0  # replay
    loop: bool = False  # replay
    follow: bool = False  # replay
    installed: list[str | InstalledBeacon] = Field(default_factory=list)
    silent_after_s: PositiveFloat = 60.0
    check_every_s: PositiveFloat = 5.0
    max_beacons: int = Field(1024, gt=0)


@register
class BeaconDriver(Driver):
    family = "beacon"
    Options = BeaconOptions
    options: BeaconOptions

    def __init__(self, config: DeviceConfig, ctx: DriverContext, *,
                 backend: ScanBackend | None = None) -> None:
        super().__init__(config, ctx)
        opts = self.options
        self.silent_after_ms = int(opts.silent_after_s * 1000)
        self.check_every_s = opts.check_every_s
        installed = [(b, None) if isinstance(b, str) else (b.key, b.name)
                     for b in opts.installed]
        self.metrics = _metrics(ctx)
        self.inventory = BeaconInventory(installed=installed, max_beacons=opts.max_beacons,
                                         started_ms=ctx.clock.now_ms())
        self.scanner = BeaconScanner(
            self._on_advert,
            backend=backend if backend is not None else opts.backend,
            device_id=config.device_id,
            on_bad_record=self._on_bad_record,
            **opts.model_dump(include={"adapter", "scanning_mode", "recording", "speed",
                                       "loop", "follow"}),
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

    @command("inventory")
    async def _inventory(self, args: Any) -> dict[str, Any]:
        return {"beacons": [b.public() for b in self.inventory.beacons.values()]}

    @command("check")
    async def _check(self, args: Any) -> dict[str, Any]:
        return {"transitions": len(await self.check())}
