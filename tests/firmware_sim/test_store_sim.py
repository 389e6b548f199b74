"""The store simulator speaks the local-bus protocol to a real broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from firmware_sim.store import StoreSimulator
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
