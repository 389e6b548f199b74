"""The store simulator speaks the local-bus protocol to a real broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from firmware_sim.store import GENERIC_KINDS, StoreSimulator
from protocols import decode, topics
from protocols.messages import DeviceEvent, DeviceState, Telemetry
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


async def test_simulated_store_publishes_valid_state_telemetry_and_events(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    events: list[DeviceEvent] = []
    states: dict[str, DeviceState] = {}
    tele: list[Telemetry] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            await client.subscribe(topics.local_up_filter(), qos=1)
            ready.set()
            async for msg in client.messages:
                parsed = topics.parse_local(str(msg.topic))
                raw = bytes(msg.payload)  # type: ignore[arg-type]
                if parsed.type == "evt":
                    events.append(decode(raw, DeviceEvent))
                elif parsed.type == "state":
                    states[parsed.device_id] = decode(raw, DeviceState)
                elif parsed.type == "tele":
                    tele.append(decode(raw, Telemetry))

    listener = asyncio.create_task(listen())
    await ready.wait()
    sim = StoreSimulator(bus_url=mosquitto.url, devices=3, rate=0, max_events=300,
                         tele_interval_s=0.2, ledger=tmp_path / "ledger.txt")
    await asyncio.wait_for(sim.run(asyncio.Event()), timeout=30)
    await asyncio.sleep(0.5)
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)

    assert sim.produced == 300
    ledger = (tmp_path / "ledger.txt").read_text().split()
    assert sorted(ledger) == sorted(sim.produced_ids)
    assert sorted(e.id for e in events) == sorted(ledger)
    assert len(set(ledger)) == 300
    assert set(states) == {s.device_id for s in sim.specs()}
    assert all(not s.online for s in states.values())  # clean stop publishes offline
    assert tele and all(t.samples[0].values["battery_pct"] is not None for t in tele)


# Business events come only from the till, the carts and the vending cabinet.
BUSINESS_KINDS = {"sale", "refund", "vend", "member_visit", "coupon_issued", "coupon_redeemed"}


async def test_generic_sensors_publish_readings_never_business_events(
    mosquitto: Mosquitto,
) -> None:
    events: dict[str, list[DeviceEvent]] = {}
    ready = asyncio.Event()

    async def listen() -> None:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            await client.subscribe(topics.local_up_filter(), qos=1)
            ready.set()
            async for msg in client.messages:
                where = topics.parse_local(str(msg.topic))
                if where.type == "evt":
                    raw = bytes(msg.payload)  # type: ignore[arg-type]
                    events.setdefault(where.device_kind, []).append(decode(raw, DeviceEvent))

    listener = asyncio.create_task(listen())
    await ready.wait()
    # one device of every generic kind, 40 readings each
    sim = StoreSimulator(bus_url=mosquitto.url, devices=len(GENERIC_KINDS), rate=0,
                         max_events=40 * len(GENERIC_KINDS), tele_interval_s=60)
    await asyncio.wait_for(sim.run(asyncio.Event()), timeout=30)
    await asyncio.sleep(0.5)
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)

    assert set(events) == set(GENERIC_KINDS)
    assert sum(len(v) for v in events.values()) == 40 * len(GENERIC_KINDS)
    kinds = {e.kind for evs in events.values() for e in evs}
    assert not kinds & BUSINESS_KINDS, f"generic sensors made up {kinds & BUSINESS_KINDS}"
    assert kinds == {"device_event"}

    def ordered(kind: str) -> list[dict[str, object]]:
        return [e.data for e in sorted(events[kind], key=lambda e: int(e.data["n"]))]

    # a door contact opens and closes in turn
    doors = [d["state"] for d in ordered("door_contact")]
    assert doors == ["open", "closed"] * 20
    # a chilled cabinet's probe reads 2-7 degC, the sales floor about 21 degC
    fridge = [float(d["temperature_c"]) for d in ordered("fridge_probe")]  # type: ignore[arg-type]
    assert all(1.0 < t < 7.0 for t in fridge) and len(set(fridge)) > 5
    env = ordered("env_sensor")
    assert all(17.0 < float(d["temperature_c"]) < 25.0  # type: ignore[arg-type]
               and 30.0 < float(d["humidity_pct"]) < 60.0 for d in env)  # type: ignore[arg-type]
    footfall = ordered("footfall")
    assert all(isinstance(d["entered"], int) and isinstance(d["exited"], int)
               and 0 <= d["entered"] <= 3 and 0 <= d["exited"] <= 3 for d in footfall)
    assert sum(int(d["entered"]) for d in footfall) > 0  # type: ignore[call-overload]
