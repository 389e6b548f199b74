"""The box's cabinets module without the cloud (decision 0066): pickups arrive on
``cmd/pickups`` over the real uplink broker, codes are entered at the simulated cabinet
on its pty. A jammed door gives the code back (it opens once the latch works); a
pickup past its time is reported expired and its code refused; duplicate, foreign and
garbled dispatches change nothing and are counted; a claim the box was stopped in the
middle of opens nothing until staff resolve it."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.app import Agent
from edge_agent.commands import CommandRefused
from edge_agent.drivers.vending.desk import OpenDoor
from edge_agent.modules.cabinets import Cabinets, ResolveArgs
from firmware_sim.vending import VendingFaults, start_vending_sim
from protocols import pickup, topics
from protocols.codec import decode, encode
from protocols.messages import Event
from tests.cloud.conftest import publish
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until, watch
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

KEY = Ed25519PrivateKey.generate()
PUBLIC = base64.b64encode(KEY.public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def dispatch(store: str, order_id: str, door: int, expires_ms: int) -> tuple[bytes, str]:
    msg = pickup.PickupDispatch(order_id=order_id, store_id=store, cabinet_id="vend-1",
                                door=door, lines=[pickup.PickupLine(sku="sandwich", qty=1)],
                                expires_ms=expires_ms, ts=expires_ms - 1)
    sig = KEY.sign(pickup.signed_message(store_id=store, cabinet_id="vend-1", door=door,
                                         order_id=order_id, expires_ms=expires_ms))
    return encode(msg), pickup.make_code(order_id, expires_ms, signature=sig)


def cabinets_of(agent: Agent) -> Cabinets:
    module = agent.module("cabinets")
    assert isinstance(module, Cabinets)
    return module


async def test_jammed_door_gives_the_code_back_and_expiry_refuses_it(
        tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto) -> None:
    sim, sim_task = await start_vending_sim(faults=VendingFaults(jammed_doors={3}))
    devices = [{"id": "vend-1", "family": "vending", "model": "sim-lockboard",
                "options": {"port": sim.port.path, "poll_interval_s": 0.01,
                            "reply_timeout_s": 0.2,
                            "doors": {"3": {"item": 3, "price": 300, "sku": "sandwich"},
                                      "4": {"item": 4, "price": 300, "sku": "sandwich"}}}}]
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker, devices=devices,
                      modules={"cabinets": {"trusted_keys": [PUBLIC], "expiry_check_s": 0.1}})
    store = cfg.store_id
    try:
        async with watch(uplink_broker, store) as seen, running_agent(cfg) as agent:
            await wait_until(lambda: agent.drivers.health().get("vend-1", {}).get("online"),
                             what="cabinet online")
            cabinets = cabinets_of(agent)
            now = agent.clock.now_ms()
            first, code = dispatch(store, "order-jam", 3, now + 3_600_000)
            second, late_code = dispatch(store, "order-late", 4, now + 1_500)
            other, _ = dispatch("another-store", "order-x", 4, now + 3_600_000)
            await publish(uplink_broker.url, [(pickup.topic(store), first),
                                              (pickup.topic(store), first),
                                              (pickup.topic(store), second),
                                              (pickup.topic(store), other),
                                              (pickup.topic(store), b"{not json")])
            await wait_until(lambda: metric(agent, "storefleet_cabinet_pickups_total",
                                            result="bad_payload") == 1, what="all dispatches")
            count = lambda r: metric(agent, "storefleet_cabinet_pickups_total",  # noqa: E731
                                     result=r)
            assert (count("new"), count("duplicate"), count("wrong_store")) == (2, 1, 1)

            sim.enter_code(code)  # the latch is stuck: nothing opens, the code stays good
            await wait_until(lambda: count("jammed") == 1, what="the jammed door")
            assert sim.unlocks == [] and cabinets.pickups["order-jam"].status == "ready"
            sim.faults.jammed_doors.clear()
            sim.enter_code(code)
            await wait_until(lambda: sim.unlocks == [3], what="door 3 opened")
            assert sim.open_doors == {3}

            await wait_until(lambda: cabinets.pickups["order-late"].status == "expired",
                             what="the late pickup expired")
            sim.enter_code(late_code)
            await asyncio.wait_for(sim.wait_idle(), 10)
            await wait_until(lambda: metric(agent, "storefleet_cabinet_codes_total",
                                            kind="pickup", result="expired") == 1,
                             what="the late code refused")
            assert sim.unlocks == [3]
            evt = topics.evt(store, pickup.KIND)
            await wait_until(lambda: len(seen.on(evt)) == 4, what="four status events")
            reports = sorted((e.data["order_id"], e.data["status"])
                             for e in (decode(p, Event) for p in seen.on(evt)))
            assert reports == [("order-jam", "picked_up"), ("order-jam", "ready"),
                               ("order-late", "expired"), ("order-late", "ready")]
        kept = json.loads((cfg.data_dir / "cabinets" / "pickups.json").read_text())
        assert sorted((p["order_id"], p["status"]) for p in kept) == [
            ("order-jam", "picked_up"), ("order-late", "expired")]
    finally:
        sim_task.cancel()
        await asyncio.gather(sim_task, return_exceptions=True)
        sim.port.close()


async def test_a_claim_left_by_a_stop_opens_nothing_until_staff_resolve_it(
        tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto) -> None:
    sim, sim_task = await start_vending_sim()
    devices = [{"id": "vend-1", "family": "vending", "model": "sim-lockboard",
                "options": {"port": sim.port.path, "poll_interval_s": 0.01,
                            "reply_timeout_s": 0.2,
                            "doors": {"3": {"item": 3, "price": 300, "sku": "sandwich"}}}}]
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker, devices=devices,
                      modules={"cabinets": {"trusted_keys": [PUBLIC]}})
    try:
        async with running_agent(cfg) as agent:
            cabinets = cabinets_of(agent)
            payload, code = dispatch(cfg.store_id, "order-cut", 3,
                                     agent.clock.now_ms() + 3_600_000)
            await cabinets.handle_dispatch(payload)
            # the box stops between the claim and the door's read-back: claimed on disk
            answer = await cabinets.code_entered("vend-1", code)
            assert isinstance(answer, OpenDoor) and answer.door == 3
        async with running_agent(cfg) as agent:
            cabinets = cabinets_of(agent)
            assert metric(agent, "storefleet_cabinet_pickups_total",
                          result="claimed_at_start") == 1
            await wait_until(lambda: agent.drivers.health().get("vend-1", {}).get("online"),
                             what="cabinet online")
            assert await sim.collect(code) == []  # no second opening while unresolved
            resolve = cabinets.commands()["pickup_resolve"]
            done = await resolve.run(ResolveArgs(order_id="order-cut", opened=False))
            assert done == {"order_id": "order-cut", "status": "ready"}
            assert await sim.collect(code) == [3]  # staff found the goods: it works again
            with pytest.raises(CommandRefused):
                await resolve.run(ResolveArgs(order_id="order-cut", opened=True))
    finally:
        sim_task.cancel()
        await asyncio.gather(sim_task, return_exceptions=True)
        sim.port.close()
