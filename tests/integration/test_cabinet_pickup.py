"""Cabinet pickup and member vends end to end (decision 0066): the real cloud under
uvicorn with ingest, real Mosquitto, a real agent with the vending driver, and the
cabinet simulator on its pty speaking the serial protocol.

Pickup: orders placed over the cloud API are routed to the cabinet's free doors, held
by the box, and a code entered at the cabinet opens exactly its door, once; a walk-up
cannot buy a held door; a second use, a forged and a garbage code open nothing and are
counted; with the broker stopped the box still opens a door for a valid code and the
status reaches the cloud when the broker is back; a code whose time ran out on the
box's clock is refused and the order is cancelled, its door free again.

Member vend: a signed member code entered at the cabinet makes the next vend the
member's: priced by the engine with the cabinet's near-expiry markdown, and the points
the engine gave are credited to the member in the cloud; with the broker stopped as
well, the points arriving once it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from firmware_sim.vending import VendingCabinetSim, start_vending_sim
from pricing import Markdown, PointsEarn, PromotionSnapshot, Scope
from protocols import membercode
from protocols.clock import SystemClock
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until
from tests.integration.test_content_offline import Cloud
from tests.integration.test_members_offline import members_of
from tests.services import Mosquitto

pytestmark = [pytest.mark.mosquitto]

logger = logging.getLogger(__name__)

HOUR_MS = 3_600_000
SECRET = "integration-cabinet-code-secret-01"
HASH_KEY = "integration-cabinet-hash-key-0001"


class LateClock(SystemClock):
    """The box's wall clock, moved on by ``skew_ms`` (timers keep the real monotonic)."""

    def __init__(self) -> None:
        self.skew_ms = 0

    def now_ms(self) -> int:
        return super().now_ms() + self.skew_ms


def cabinet_device(sim: VendingCabinetSim, doors: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"id": "vend-1", "family": "vending", "model": "sim-lockboard",
            "options": {"port": sim.port.path, "poll_interval_s": 0.02,
                        "reply_timeout_s": 0.2, "doors": doors}}


async def until(check: Callable[[], Awaitable[bool]], *, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def pickup_status(http: httpx.AsyncClient, order_id: str) -> tuple[str, str]:
    doc = (await http.get(f"/api/v1/cabinet-orders/{order_id}")).json()
    return doc["pickup_status"], doc["order_status"]


async def test_pickup_code_opens_exactly_its_door_once_also_offline(
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]) -> None:
    broker = mosquitto_factory()
    cloud = Cloud(tmp_path, broker)
    sim, sim_task = await start_vending_sim(doors=8)
    clock = LateClock()
    planogram = {str(d): {"item": 20 + d, "price": 350, "sku": "sandwich"} for d in (2, 5, 6)}
    cfg = make_config(tmp_path / "box", uplink=broker, local=mosquitto_factory(),
                      await_cloud_ready=True, await_cloud_ack=True,
                      devices=[cabinet_device(sim, planogram)], modules={
                          "content": cloud.content_settings(),
                          "cabinets": {"expiry_check_s": 0.2}})
    store = cfg.store_id
    try:
        async with cloud.serving() as http, running_agent(cfg, clock=clock) as agent:
            await wait_until(lambda: agent.drivers.health().get("vend-1", {}).get("online"),
                             what="cabinet online")
            r = await http.put(f"/api/v1/stores/{store}/cabinets/vend-1", json={
                "lat": 52.52, "lon": 13.405,
                "doors": {d: {"sku": "sandwich", "qty": 1} for d in ("2", "5", "6")}})
            assert r.status_code == 200, r.text
            orders = []
            for n, hold_h in enumerate((24, 24, 1)):
                r = await http.post("/api/v1/cabinet-orders", json={
                    "idempotency_key": f"pickup-e2e-{n}", "lines": [{"sku": "sandwich",
                                                                     "qty": 1}],
                    "customer": {"name": "Ada"}, "lat": 52.52, "lon": 13.4, "hold_h": hold_h})
                assert r.status_code == 201, r.text
                orders.append(r.json())
            a, b, c = orders
            assert [o["door"] for o in orders] == [2, 5, 6]

            async def all_ready() -> bool:
                states = []
                for o in orders:
                    states.append((await pickup_status(http, o["order_id"]))[0])
                return states == ["ready"] * 3

            await until(all_ready, within_s=30, what="the box holding the three pickups")

            sim.customer(door=2, funds=1_000)  # a walk-up cannot buy a held door
            await asyncio.wait_for(sim.wait_idle(), 10)
            assert sim.unlocks == [] and sim.vends == []

            started = time.monotonic()
            assert await sim.collect(a["pickup_code"]) == [2]
            opened_s = time.monotonic() - started
            assert sim.open_doors == {2}  # the board's door bitmap: that door, no other

            async def a_handed_over() -> bool:
                return await pickup_status(http, a["order_id"]) == ("picked_up", "handed_over")

            await until(a_handed_over, within_s=30, what="order a handed over in the cloud")
            logger.info("pickup: door open %.3f s after the code, handed over in the cloud "
                        "%.3f s after it", opened_s, time.monotonic() - started)
            assert opened_s < 2.0  # a poll (20 ms here), a signature check, an unlock
            sim.close_door(2)

            sig = b["pickup_code"].rsplit(".", 1)[1]
            forged = b["pickup_code"][: -len(sig)] + sig[::-1]
            for code in (a["pickup_code"], forged, "hello"):
                sim.enter_code(code)
            await asyncio.wait_for(sim.wait_idle(), 10)
            await asyncio.sleep(0.2)
            assert sim.unlocks == [2] and sim.open_doors == set()
            codes = "storefleet_cabinet_codes_total"
            assert metric(agent, codes, kind="pickup", result="used") == 1
            assert metric(agent, codes, kind="pickup", result="forged") == 1
            assert metric(agent, codes, kind="other", result="malformed") == 1

            broker.stop()  # the store offline from the cloud: the box decides alone
            await wait_until(lambda: not agent.online(), within_s=20, what="the box offline")
            sim.enter_code(b["pickup_code"])
            await wait_until(lambda: sim.unlocks == [2, 5], what="door 5 opened offline")
            assert await pickup_status(http, b["order_id"]) == ("ready", "ready")
            broker.start()

            async def b_handed_over() -> bool:
                return await pickup_status(http, b["order_id"]) == ("picked_up", "handed_over")

            await until(b_handed_over, within_s=40, what="order b's pickup reported")

            clock.skew_ms = 2 * HOUR_MS  # c's hour is up on the box's clock

            async def c_expired() -> bool:
                return await pickup_status(http, c["order_id"]) == ("expired", "cancelled")

            await until(c_expired, within_s=30, what="order c expired")
            sim.enter_code(c["pickup_code"])
            await asyncio.wait_for(sim.wait_idle(), 10)
            await asyncio.sleep(0.2)
            assert sim.unlocks == [2, 5]
            assert metric(agent, codes, kind="pickup", result="expired") == 1
            doors = (await http.get(f"/api/v1/stores/{store}/cabinets/vend-1")).json()["doors"]
            assert doors == {"2": {"sku": "sandwich", "qty": 0, "order_id": None},
                             "5": {"sku": "sandwich", "qty": 0, "order_id": None},
                             "6": {"sku": "sandwich", "qty": 1, "order_id": None}}
            sim.customer(door=6, funds=1_000)  # c's door is sold to a walk-up again
            await wait_until(lambda: sim.unlocks == [2, 5, 6], what="door 6 sold")
        # the box restarted: what was collected stays collected (pickups.json)
        async with running_agent(cfg, clock=clock) as agent:
            await wait_until(lambda: agent.drivers.health().get("vend-1", {}).get("online"),
                             what="cabinet online again")
            for order in (a, b):
                sim.enter_code(order["pickup_code"])
            await wait_until(lambda: metric(agent, "storefleet_cabinet_codes_total",
                                            kind="pickup", result="used") == 2,
                             what="both codes refused as used")
            assert sim.unlocks == [2, 5, 6]
    finally:
        sim_task.cancel()
        await asyncio.gather(sim_task, return_exceptions=True)
        sim.port.close()


async def test_member_code_at_the_cabinet_prices_the_vend_and_earns_points(
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]) -> None:
    broker = mosquitto_factory()
    cloud = Cloud(tmp_path, broker)
    cloud.settings = cloud.settings.model_copy(update={
        "member_code_secret": SecretStr(SECRET), "member_hash_key": SecretStr(HASH_KEY)})
    # the cabinet's promotions: 30 % off what is within a day of its best-before, and a
    # point per 10 minor units paid
    promotions = PromotionSnapshot(version=3, currency="EUR", promotions=(
        Markdown(id="near-expiry", scope=Scope(skus=("cola", "sandwich")), percent_bp=3_000,
                 near_expiry_within_min=24 * 60),
        PointsEarn(id="points", points=1, per_minor=10)))
    promo_file = tmp_path / "cabinet-promotions.json"
    promo_file.write_text(promotions.model_dump_json(), encoding="utf-8")
    sim, sim_task = await start_vending_sim(doors=8)
    soon = int(time.time() * 1000) + 2 * HOUR_MS
    planogram = {"0": {"item": 10, "price": 150, "sku": "cola", "best_before_ms": soon},
                 "1": {"item": 11, "price": 350, "sku": "sandwich"}}
    cfg = make_config(tmp_path / "box", uplink=broker, local=mosquitto_factory(),
                      await_cloud_ready=True, await_cloud_ack=True,
                      devices=[cabinet_device(sim, planogram)], modules={
                          "content": cloud.content_settings(), "members": {},
                          "cabinets": {"promotions_file": str(promo_file)}})
    store = cfg.store_id
    try:
        async with cloud.serving() as http, running_agent(cfg) as agent:
            r = await http.post("/api/v1/members", json={"phone": "+49 170 5550066"})
            anna = r.json()["member_id"]
            for _ in range(200):  # the store is known once its birth is in
                r = await http.put(f"/api/v1/members/{anna}/home-store",
                                   json={"store_id": store})
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert r.status_code == 200, r.text
            r = await http.post("/api/v1/member-snapshots/publish", json={"stores": [store]})
            assert r.status_code == 201, r.text
            await wait_until(lambda: members_of(agent).snapshot is not None, within_s=20,
                             what="the member snapshot on the box")

            sim.customer(door=1, funds=1_000)  # a walk-up: list price, nobody earns
            await asyncio.wait_for(sim.wait_idle(), 10)
            now = agent.clock.now_ms()
            key = membercode.day_key(SECRET.encode(), anna, day=membercode.day_of(now))
            vend = await sim.member_vend(membercode.make(key, anna, now_ms=now), door=0,
                                         funds=1_000)
            assert vend is not None and (vend.price, vend.success) == (105, True)
            assert [v.price for v in sim.vends] == [350, 105]

            async def earned() -> bool:
                doc = (await http.get(f"/api/v1/members/{anna}")).json()
                return int(doc["points_balance"]) == 10  # 105 paid: 10 points

            await until(earned, within_s=30, what="the member's points from the vend")
            events = (await http.get("/api/v1/events", params={
                "store_id": store, "kind": "vend"})).json()
            rows = events["items"] if isinstance(events, dict) else events
            member_vends = [e["data"] for e in rows if e["data"].get("member_id") == anna]
            assert len(member_vends) == 1
            data = member_vends[0]
            assert (data["amount"], data["totals"]["paid"], data["totals"]["discount"],
                    data["totals"]["points_earned"]) == (105, 105, 45, 10)
            assert sorted(data["applied"]) == ["near-expiry", "points"]
            assert metric(agent, "storefleet_cabinet_codes_total", kind="member",
                          result="accepted") == 1

            # the store offline: the code is checked from the snapshot, the vend priced
            # the same, and the points arrive with the event once the broker is back
            broker.stop()
            await wait_until(lambda: not agent.online(), within_s=20, what="the box offline")
            later = agent.clock.now_ms() + membercode.STEP_MS  # a code of the next step
            sim.enter_code(membercode.make(key, anna, now_ms=later))
            sim.customer(door=0, funds=1_000)
            await asyncio.wait_for(sim.wait_idle(), 10)
            assert [v.price for v in sim.vends] == [350, 105, 105]
            broker.start()

            async def earned_twice() -> bool:
                doc = (await http.get(f"/api/v1/members/{anna}")).json()
                return int(doc["points_balance"]) == 20

            await until(earned_twice, within_s=40, what="the offline vend's points")
    finally:
        sim_task.cancel()
        await asyncio.gather(sim_task, return_exceptions=True)
        sim.port.close()
