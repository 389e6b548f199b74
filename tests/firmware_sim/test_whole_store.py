"""The whole-store simulator: layout, beacon air, carts and other families on a real bus."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from firmware_sim.beacon import advert_records
from firmware_sim.cart.walker import Walker
from firmware_sim.layouts import DEFAULT_LAYOUT, Layout, LayoutError
from firmware_sim.store import (
    GENERIC_KINDS,
    StoreSimulator,
    start_wired_sims,
    store_device_configs,
)
from firmware_sim.vending import is_member_card
from protocols import ble, decode, mdb, topics
from protocols.cart import CartScan, CartSessionMsg
from protocols.messages import DeviceState, Event
from tests.edge_agent.helpers import (
    Watcher,
    make_config,
    new_store_id,
    running_agent,
    wait_until,
    watch,
)
from tests.services import Mosquitto

LAYOUT = Layout.load(DEFAULT_LAYOUT)


def test_default_layout_is_a_30_by_20_store_with_beacons_and_shelves() -> None:
    assert (LAYOUT.width_m, LAYOUT.height_m) == (30.0, 20.0)
    assert len(LAYOUT.beacons) >= 6 and len({b.key for b in LAYOUT.beacons}) == len(LAYOUT.beacons)
    assert len(LAYOUT.skus()) >= 20 and len(LAYOUT.aisles) >= 3
    assert LAYOUT.zone_at(LAYOUT.entrance) == "entrance"


def test_bad_layouts_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[store]\nwidth_m = 10\nheight_m = 10\nentrance = [50, 1]\n')
    with pytest.raises(LayoutError):
        Layout.load(bad)
    with pytest.raises(LayoutError):
        Layout.load(tmp_path / "missing.toml")


def test_simulated_air_is_real_beacon_bytes_with_path_loss() -> None:
    records = list(advert_records(LAYOUT, duration_s=20, rng=random.Random(1),
                                  receiver=LAYOUT.beacons[0].pos))
    heard: dict[str, list[int]] = {}
    for rec in records:
        for frame in ble.parse_advertisement(bytes.fromhex(str(rec["adv"]))):
            if isinstance(frame, ble.IBeacon | ble.EddystoneUID):
                heard.setdefault(frame.key, []).append(int(rec["rssi"]))  # type: ignore[call-overload]
    near, far = LAYOUT.beacons[0].key, LAYOUT.beacons[4].key
    assert set(heard) == {b.key for b in LAYOUT.beacons}
    # next to B01 it is much louder than B05 about 23 m away
    assert sum(heard[near]) / len(heard[near]) > sum(heard[far]) / len(heard[far]) + 15


def test_walker_moves_at_its_speed_and_hears_the_nearest_beacon_loudest() -> None:
    walker = Walker(LAYOUT, random.Random(3), speed_mps=1.0)
    target = LAYOUT.beacons[2].pos
    walker.go_to(target)
    start = walker.pos
    walker.step(1.0)
    moved = ((walker.pos[0] - start[0]) ** 2 + (walker.pos[1] - start[1]) ** 2) ** 0.5
    assert abs(moved - 1.0) < 1e-9
    for _ in range(100):
        walker.step(0.2)
    assert walker.arrived and walker.pos == target
    wins = sum(walker.readings()[0][0] == LAYOUT.beacons[2].key for _ in range(50))
    assert wins > 35  # noise sometimes lets a neighbour win


def test_store_device_configs_match_the_layout(tmp_path: Path) -> None:
    configs = store_device_configs(DEFAULT_LAYOUT, radio_path=tmp_path / "air.jsonl")
    scanner = next(c for c in configs if c["family"] == "beacon")
    assert {i["key"] for i in scanner["options"]["installed"]} == {b.key for b in LAYOUT.beacons}
    assert any(c["family"] == "cart" for c in configs)


@pytest.mark.mosquitto
async def test_whole_store_runs_carts_beacons_and_generic_devices(
    mosquitto: object, tmp_path: Path
) -> None:
    broker = mosquitto
    states: dict[str, DeviceState] = {}
    scans: list[CartScan] = []
    sessions: list[CartSessionMsg] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async with aiomqtt.Client(broker.host, broker.port) as client:  # type: ignore[attr-defined]
            await client.subscribe(topics.local_up_filter(), qos=1)
            ready.set()
            async for msg in client.messages:
                where = topics.parse_local(str(msg.topic))
                raw = bytes(msg.payload)  # type: ignore[arg-type]
                if where.type == "state" and raw:
                    states[where.device_id] = decode(raw, DeviceState)
                elif where.device_kind == "cart" and where.type == "scan":
                    scans.append(decode(raw, CartScan))
                elif where.device_kind == "cart" and where.type == "session":
                    sessions.append(decode(raw, CartSessionMsg))

    listener = asyncio.create_task(listen(), name="test-listen")
    await ready.wait()
    air = tmp_path / "air.jsonl"
    sim = StoreSimulator(bus_url=broker.url, devices=2, rate=20, max_events=40,  # type: ignore[attr-defined]
                         layout=DEFAULT_LAYOUT, carts=2, radio_path=air)
    await asyncio.wait_for(sim.run(asyncio.Event()), timeout=30)
    await asyncio.sleep(0.3)
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)

    assert sim.produced == 40  # the generic behaviour is unchanged
    assert {"cart", "beacon"} <= set(sim.families_started)
    cart_ids = {c.cart_id for c in sim.cart_sims}
    assert len(cart_ids) == 2
    assert cart_ids <= set(states) and all(not states[c].online for c in cart_ids)
    readings = [r for s in scans for r in s.readings]
    assert len(scans) >= 10 and readings
    assert all(r.beacon.startswith(("ibeacon:", "eddystone:")) for r in readings)
    assert sessions and sessions[0].action == "start"
    lines = [json.loads(line) for line in air.read_text().splitlines()]
    assert len(lines) >= len(LAYOUT.beacons)  # at least one second of air


@pytest.mark.mosquitto
async def test_vends_come_from_the_cabinet_driver_over_the_pty_with_member_cards(
    mosquitto_factory: Callable[[], Mosquitto], tmp_path: Path
) -> None:
    """The whole store with the agent: generic sensors publish readings only; simulated
    customers buy at the cabinet, and every ``vend`` is the vending driver's, run over the
    cabinet's pty, some paid with a member card."""
    uplink, local = mosquitto_factory(), mosquitto_factory()
    store = new_store_id()
    wired, closers = await start_wired_sims(store, customer_every_s=0.4)
    cabinet = next(d for d in wired if d["family"] == "vending")
    assert str(cabinet["options"]["port"]).startswith("/dev/pts/")  # the cabinet's pty
    cfg = make_config(tmp_path, uplink=uplink, local=local, store_id=store, devices=wired,
                      health_interval_s=0.2)
    sim = StoreSimulator(bus_url=local.url, store_id=store, devices=len(GENERIC_KINDS),
                         rate=20, tele_interval_s=1.0)
    stop = asyncio.Event()
    vend_topic = topics.evt(store, "vend")

    def vends(seen: Watcher) -> list[Event]:
        return [decode(raw, Event) for raw in seen.on(vend_topic)]

    def members_and_others(seen: Watcher) -> bool:
        paid = [e for e in vends(seen) if e.data["outcome"] == "success"]
        return (any(is_member_card(e.data["media_id"]) for e in paid)
                and any(not is_member_card(e.data["media_id"]) for e in paid))

    try:
        async with watch(uplink, store) as seen, running_agent(cfg):
            sim_task = asyncio.create_task(sim.run(stop), name="test-store-sim")
            await wait_until(lambda: members_and_others(seen), within_s=60,
                             what="member and non-member vends at the cabinet")
            stop.set()
            await asyncio.wait_for(sim_task, 20)
            await asyncio.sleep(0.5)
    finally:
        for close in closers:
            await close()

    got = vends(seen)
    assert {e.device_id for e in got} == {cabinet["id"]}
    doors = {int(k): v for k, v in cabinet["options"]["doors"].items()}
    for e in got:
        # the driver's own session: its deterministic id, its planogram, its card read
        assert e.id == mdb.vend_event_id(store, cabinet["id"], e.data["session_id"])
        assert e.data["cabinet"] == cabinet["id"]
        slot = doors[e.data["door"]]
        assert (e.data["item"], e.data["sku"], e.data["price"]) == (
            slot["item"], slot["sku"], slot["price"])
        assert e.data["outcome"] in {"success", "denied"}
        assert e.data["amount"] == (slot["price"] if e.data["outcome"] == "success" else 0)
    # the generic sensors reached the cloud as readings, and no one made up a sale
    readings = [decode(r.payload, Event) for r in seen.under(f"{topics.store_root(store)}/evt/")]
    generic = {s.device_id for s in sim.specs()}
    assert {e.device_id for e in readings if e.kind == "device_event"} == generic
    assert all(e.kind == "device_event" for e in readings if e.device_id in generic)
    assert not [e for e in readings if e.kind in {"sale", "member_visit"}]
