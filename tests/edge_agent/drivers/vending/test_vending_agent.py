"""Vending cabinet and receipt printer through the real agent: config starts the
drivers, a vend reaches the uplink broker as one ``vend`` event with its deterministic
id, a printer alarm as one ``device_alarm``, and health reaches the agent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from firmware_sim.printer.sim import start_printer_sim
from firmware_sim.vending import start_vending_sim
from protocols import mdb, topics
from protocols.codec import decode
from protocols.messages import Event
from tests.edge_agent.helpers import make_config, running_agent, wait_until, watch
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


async def test_vend_and_printer_alarm_through_the_agent(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cabinet, cabinet_task = await start_vending_sim()
    printer, server = await start_printer_sim(port=0)
    devices = [
        {"id": "vend-1", "family": "vending", "model": "sim-lockboard",
         "options": {"port": cabinet.port.path, "poll_interval_s": 0.01,
                     "reply_timeout_s": 0.2,
                     "doors": {"1": {"item": 11, "price": 300, "sku": "WATER-500"}}}},
        {"id": "prn-1", "family": "printer", "model": "sim-escpos",
         "options": {"host": "127.0.0.1", "tcp_port": server.sockets[0].getsockname()[1],
                     "status_interval_s": 0.05}},
    ]
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker, devices=devices,
                      health_interval_s=0.1)
    store = cfg.store_id
    try:
        async with watch(uplink_broker, store) as seen, running_agent(cfg) as agent:
            await wait_until(lambda: all(agent.drivers.health().get(d, {}).get("online")
                                         for d in ("vend-1", "prn-1")), what="drivers online")
            cabinet.customer(door=1, funds=500)
            vend_topic = topics.evt(store, "vend")
            await wait_until(lambda: seen.on(vend_topic), what="vend event")
            event = decode(seen.on(vend_topic)[0], Event)
            assert event.device_id == "vend-1"
            assert event.data["outcome"] == "success" and event.data["amount"] == 300
            assert event.id == mdb.vend_event_id(store, "vend-1", event.data["session_id"])
            assert cabinet.unlocks == [1]

            printer.set_state(paper="out")
            alarm_topic = topics.evt(store, "device_alarm")
            await wait_until(lambda: seen.on(alarm_topic), what="printer alarm")
            alarm = decode(seen.on(alarm_topic)[0], Event)
            assert alarm.data == {"alarm": "paper_out", "active": True, "family": "printer"}
            await wait_until(lambda: "paper_out" in agent.drivers.health()["prn-1"]["alarms"],
                             what="alarm in health")
            await asyncio.sleep(0.3)
            assert len(seen.on(vend_topic)) == 1 and len(seen.on(alarm_topic)) == 1
    finally:
        cabinet_task.cancel()
        await asyncio.gather(cabinet_task, return_exceptions=True)
        cabinet.port.close()
        server.close()
        await printer.aclose()
        await server.wait_closed()
