"""The beacon driver above its scan backend, fed by the shipped recording."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from edge_agent.drivers.base import DeviceConfig, DriverError
from edge_agent.drivers.beacon import (
    Backend,
    BeaconDriver,
    BeaconScanner,
    BleakBackend,
    RawAdvertisement,
    ReplayBackend,
    ScannerError,
)
from edge_agent.drivers.beacon.transport import AdvertCallback
from edge_agent.drivers.supervisor import DriverSupervisor
from edge_agent.drivers.testing import FakeContext
from firmware_sim.layouts import DEFAULT_LAYOUT, Layout
from protocols import ble
from protocols.clock import ManualClock

RECORDING = Path(__file__).parents[4] / "firmware_sim" / "recordings" / "demo_store_beacons.jsonl"
LAYOUT = Layout.load(DEFAULT_LAYOUT)
KEYS = [b.key for b in LAYOUT.beacons]
B06 = next(b for b in LAYOUT.beacons if b.id == "B06")


class ClockedReplay:
    """Test backend: the recording's records, moving a ManualClock to each record's t."""

    def __init__(self, path: Path, clock: ManualClock) -> None:
        self.records = [json.loads(line) for line in path.read_text().splitlines()]
        self.clock = clock
        self.done = asyncio.Event()

    async def scan(self, on_advert: AdvertCallback) -> None:
        t0 = self.clock.monotonic()
        for rec in self.records:
            self.clock.advance(max(0.0, rec["t"] - (self.clock.monotonic() - t0)))
            try:
                raw = bytes.fromhex(rec["adv"])
            except ValueError:
                continue
            on_advert(RawAdvertisement(rec["address"], rec["rssi"], raw))
        self.done.set()
        await asyncio.Event().wait()


def config(**options: Any) -> DeviceConfig:
    return DeviceConfig(device_id="ble-1", family="beacon", model="sim", options=options)


async def test_replay_recording_builds_inventory_with_battery_and_counts_garbage() -> None:
    ctx = FakeContext()
    driver = BeaconDriver(config(backend="replay", recording=str(RECORDING), speed=0,
                                 installed=KEYS), ctx)
    assert isinstance(driver.scanner.backend, ReplayBackend)
    task = asyncio.create_task(driver.run(), name="test-beacon")
    backend = driver.scanner.backend
    for _ in range(200):
        if backend.delivered >= 190:
            break
        await asyncio.sleep(0.01)
    inventory = (await driver.handle_command("inventory", {}))["beacons"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    by_key = {b["key"]: b for b in inventory}
    assert set(by_key) == set(KEYS)  # keyed by identity, no MAC anywhere
    assert all(b["last_seen_ms"] is not None for b in inventory)
    eddystone = by_key[LAYOUT.beacons[4].key]
    assert eddystone["battery_mv"] is not None and 2900 <= eddystone["battery_mv"] <= 3000
    assert eddystone["power_1m"] == -62  # 0 m power in the frame minus 41 dB
    assert by_key[KEYS[0]]["power_1m"] == -59
    assert all(-100 <= b["rssi"] <= -40 for b in inventory)
    reg = ctx.registry
    assert reg.get_sample_value("storefleet_beacon_adverts_total", {"result": "ignored"}) == 1
    assert reg.get_sample_value("storefleet_beacon_adverts_total", {"result": "bad_record"}) == 1
    assert reg.get_sample_value("storefleet_beacon_adverts_total", {"result": "beacon"}) == 190


async def test_silent_installed_beacon_raises_one_alarm_and_recovery_clears_it() -> None:
    clock = ManualClock()
    ctx = FakeContext(clock=clock)
    backend = ClockedReplay(RECORDING, clock)
    driver = BeaconDriver(config(installed=KEYS, silent_after_s=5, check_every_s=3600), ctx,
                          backend=backend)
    task = asyncio.create_task(driver.run(), name="test-beacon")
    await asyncio.wait_for(backend.done.wait(), 5)
    assert driver.health().online

    # t = 30 s: B06 stopped at 10 s -> silent; everything else heard within 1 s.
    transitions = await driver.check()
    assert [(t.key, t.silent) for t in transitions] == [(B06.key, True)]
    assert await driver.check() == []  # once per transition, not once per check
    clock.advance(2)
    assert await driver.check() == []
    [alarm] = ctx.events
    assert alarm.kind == "device_alarm"
    assert alarm.data["alarm"] == "beacon_silent" and alarm.data["beacon"] == B06.key
    assert alarm.data["active"] is True
    health = driver.health()
    assert health.alarms == ("beacon_silent",)
    assert health.details["beacons_silent"] == [B06.key]
    assert ctx.registry.get_sample_value("storefleet_beacons_silent", {"device_id": "ble-1"}) == 1

    # B06 gets a new battery: heard again -> the alarm clears with one event.
    driver._on_advert(RawAdvertisement(B06.address, -70, B06.advertisement()))
    transitions = await driver.check()
    assert [(t.key, t.silent) for t in transitions] == [(B06.key, False)]
    assert [e.data["active"] for e in ctx.events] == [True, False]
    assert driver.health().alarms == ()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_installed_beacon_never_heard_goes_silent_after_the_bound() -> None:
    clock = ManualClock()
    ctx = FakeContext(clock=clock)

    class Quiet:
        async def scan(self, on_advert: AdvertCallback) -> None:
            await asyncio.Event().wait()

    driver = BeaconDriver(config(installed=[{"key": KEYS[0], "name": "door"}],
                                 silent_after_s=60), ctx, backend=Quiet())
    clock.advance(59)
    assert await driver.check() == []
    clock.advance(2)
    assert [t.silent for t in await driver.check()] == [True]


async def test_inventory_is_bounded_and_unknown_frames_are_counted() -> None:
    ctx = FakeContext()
    driver = BeaconDriver(config(backend="replay", recording="/nonexistent", max_beacons=3),
                          ctx)
    for minor in range(10):
        adv = ble.ibeacon_adv("f7826da6-4fa2-4e98-8024-bc5b71e0893e", 9, minor, -59)
        driver._on_advert(RawAdvertisement(f"AA:00:00:00:00:{minor:02X}", -60, adv))
    driver._on_advert(RawAdvertisement("AA:00:00:00:00:FF", -60, b"\x02\x01\x06"))
    # a TLM from an address never heard with an identity cannot be attributed
    tlm = ble.eddystone_tlm_adv(battery_mv=2900, temperature_c=20, adv_count=1, uptime_ds=1)
    driver._on_advert(RawAdvertisement("BB:00:00:00:00:01", -60, tlm))
    assert len(driver.inventory.beacons) == 3
    reg = ctx.registry
    assert reg.get_sample_value("storefleet_beacon_adverts_total", {"result": "untracked"}) == 8
    assert reg.get_sample_value("storefleet_beacon_adverts_total", {"result": "ignored"}) == 1


def test_bad_options_are_a_driver_error() -> None:
    with pytest.raises(DriverError):
        BeaconDriver(config(backend="carrier-pigeon"), FakeContext())
    with pytest.raises(DriverError):
        BeaconDriver(config(silent_after_s="soon"), FakeContext())
    with pytest.raises(ScannerError):
        BeaconDriver(config(backend="replay"), FakeContext())  # no recording


async def test_missing_recording_fails_the_run_and_the_supervisor_restarts_it() -> None:
    ctx = FakeContext()
    sup = DriverSupervisor(ctx, backoff_min_s=0.01, backoff_max_s=0.02)
    assert sup.configure([config(backend="replay", recording="/nonexistent.jsonl")]) == []
    for _ in range(100):
        if sup.health()["ble-1"]["restarts"] >= 2:
            break
        await asyncio.sleep(0.01)
    health = sup.health()["ble-1"]
    assert health["restarts"] >= 2 and health["online"] is False
    assert "cannot open recording" in health["last_error"]
    await sup.aclose()


# ---- the bleak backend, without a radio -------------------------------------------------


def test_bleak_backend_disables_bluez_duplicate_filtering() -> None:
    backend = BleakBackend(adapter="hci1")
    kwargs = backend.scanner_kwargs()
    assert kwargs == {"scanning_mode": "active",
                      "bluez": {"filters": {"DuplicateData": True}, "adapter": "hci1"}}
    # bleak itself accepts them and builds the BlueZ discovery filter from them.
    scanner = BleakScanner(detection_callback=lambda d, a: None, **kwargs)
    filters = scanner._backend._filters  # type: ignore[attr-defined]
    assert filters["DuplicateData"].value is True


def test_bleak_advertisement_data_is_rebuilt_into_the_same_bytes() -> None:
    raw = bytes.fromhex("0201061aff4c0002154142434445464748494041424344454600010002f8")
    mfr = raw[5:]  # after flags and the manufacturer AD header
    adv = AdvertisementData(
        local_name=None, manufacturer_data={0x004C: mfr[2:]}, service_data={},
        service_uuids=[], tx_power=None, rssi=-67, platform_data=(),
    )
    device = BLEDevice("AA:BB:CC:DD:EE:FF", None, None)
    converted = BleakBackend.convert(device, adv)
    assert converted.rssi == -67
    [frame] = ble.parse_advertisement(converted.raw)
    assert isinstance(frame, ble.IBeacon) and (frame.major, frame.minor) == (1, 2)


async def test_bleak_backend_without_a_radio_raises_scanner_error() -> None:
    scanner = BeaconScanner(lambda a: None, backend=Backend.BLEAK, device_id="ble-9")
    with pytest.raises(ScannerError):
        await asyncio.wait_for(scanner.run(), 10)
