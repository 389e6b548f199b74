"""Simulated customers at the vending cabinet, against the real vending driver over a pty."""

from __future__ import annotations

import asyncio
from typing import Any

from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.testing import FakeContext
from edge_agent.drivers.vending import VendingDriver
from firmware_sim.vending import MEMBER_CARDS, CabinetCustomers, start_vending_sim
from tests.edge_agent.helpers import wait_until

PLANOGRAM: dict[str, dict[str, Any]] = {"1": {"item": 11, "price": 300, "sku": "WATER-500"},
             "2": {"item": 12, "price": 450, "sku": "COLA-330"}}
PRICES = {int(door): int(slot["price"]) for door, slot in PLANOGRAM.items()}


async def test_customers_buy_through_the_driver_some_with_member_cards() -> None:
    cabinet, cabinet_task = await start_vending_sim()
    ctx = FakeContext()
    driver = VendingDriver(DeviceConfig("V1", "vending", options={
        "port": cabinet.port.path, "poll_interval_s": 0.005, "reply_timeout_s": 0.2,
        "doors": PLANOGRAM}), ctx)
    driver_task = asyncio.create_task(driver.run(), name="vending-driver-under-test")
    customers = CabinetCustomers(cabinet, PRICES, take_s=0.05, short_every=5, seed=3)
    try:
        for _ in range(24):
            await asyncio.wait_for(customers.one(), timeout=5)
    finally:
        driver_task.cancel()
        cabinet_task.cancel()
        await asyncio.gather(driver_task, cabinet_task, return_exceptions=True)
        cabinet.port.close()

    served = [visit for visit in customers.visits if visit.outcome == "served"]
    assert len(served) == 24 and customers.busy == 0
    # one vend event per customer, each naming the card that was tapped
    assert [e.data["media_id"] for e in ctx.events] == [visit.media_id for visit in served]
    members = [e for e in ctx.events if e.data["media_id"] in MEMBER_CARDS]
    assert 0 < len(members) < len(ctx.events)
    for event, visit in zip(ctx.events, served, strict=True):
        price = PRICES[visit.door]
        assert event.data["door"] == visit.door and event.data["price"] == price
        assert event.data["outcome"] == ("success" if visit.funds >= price else "denied")
    assert {e.data["outcome"] for e in ctx.events} == {"success", "denied"}
    # every customer who got a door took the item and shut it again
    assert len(cabinet.unlocks) == sum(e.data["outcome"] == "success" for e in ctx.events)
    assert cabinet.open_doors == set() and cabinet.idle


async def test_a_customer_walks_away_from_a_cabinet_no_one_polls() -> None:
    cabinet, cabinet_task = await start_vending_sim()
    customers = CabinetCustomers(cabinet, PRICES, patience_s=0.2)
    ctx = FakeContext()
    driver_task: asyncio.Task[None] | None = None
    try:
        visit = await customers.one()
        assert visit is not None and visit.outcome == "walked_away"
        assert customers.walked_away == 1 and cabinet.idle
        # a VMC that starts polling later does not sell to the customer who has left
        driver = VendingDriver(DeviceConfig("V1", "vending", options={
            "port": cabinet.port.path, "poll_interval_s": 0.005, "doors": PLANOGRAM}), ctx)
        driver_task = asyncio.create_task(driver.run(), name="vending-driver-under-test")
        await wait_until(lambda: cabinet.received >= 20, what="the driver polling")
        assert ctx.events == [] and cabinet.vends == [] and cabinet.unlocks == []
    finally:
        tasks = [cabinet_task] + ([driver_task] if driver_task is not None else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cabinet.port.close()
