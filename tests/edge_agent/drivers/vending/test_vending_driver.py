"""Vending driver against the cabinet simulator over a real pty + pyserial."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.supervisor import DriverSupervisor
from edge_agent.drivers.testing import FakeContext
from edge_agent.drivers.vending import VendingDriver
from firmware_sim.vending import VendingCabinetSim, VendingFaults, start_vending_sim
from protocols import mdb
from tests.edge_agent.helpers import wait_until

PLANOGRAM = {"2": {"item": 101, "price": 250, "sku": "COLA-330"},
             "3": {"item": 102, "price": 400, "sku": "SANDWICH"}}


def config(path: str, **extra: Any) -> DeviceConfig:
    return DeviceConfig("V1", "vending", options={
        "port": path, "poll_interval_s": 0.005, "reply_timeout_s": 0.1, "status_every": 5,
        "doors": PLANOGRAM, **extra})


@contextlib.asynccontextmanager
async def running(sim_faults: VendingFaults | None = None, *, link: Path | None = None,
                  ) -> AsyncIterator[tuple[VendingCabinetSim, FakeContext, VendingDriver]]:
    sim, sim_task = await start_vending_sim(faults=sim_faults, link=link)
    ctx = FakeContext()
    driver = VendingDriver(config(sim.port.path), ctx)
    task = asyncio.create_task(driver.run(), name="vending-driver-under-test")
    try:
        yield sim, ctx, driver
    finally:
        for t in (task, sim_task):
            t.cancel()
        await asyncio.gather(task, sim_task, return_exceptions=True)
        sim.port.close()


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    await wait_until(cond, within_s=timeout)


def rejected(ctx: FakeContext, reason: str) -> float:
    return ctx.registry.get_sample_value(
        "storefleet_serial_frames_rejected_total", {"device": "V1", "reason": reason}) or 0.0


async def test_vend_success_emits_one_event_with_deterministic_id() -> None:
    async with running() as (sim, ctx, driver):
        sim.customer(door=2, funds=1000)
        (event,) = await ctx.wait_events(1)
        assert event.kind == "vend" and event.device_id == "V1"
        assert event.data["outcome"] == "success" and event.data["amount"] == 250
        assert event.data["sku"] == "COLA-330" and event.data["door"] == 2
        assert event.id == mdb.vend_event_id("S001", "V1", event.data["session_id"])
        await until(lambda: driver.health().details["session"] == "idle")
        assert sim.unlocks == [2] and sim.vends[-1].success is True
        assert driver.health().online and driver.health().details["open_doors"] == [2]
        await asyncio.sleep(0.05)
        assert len(ctx.events) == 1  # END_SESSION does not produce a second event
        assert ctx.registry.get_sample_value(
            "storefleet_vends_total", {"device": "V1", "outcome": "success"}) == 1


async def test_denied_vend_is_reported_and_opens_nothing() -> None:
    async with running() as (sim, ctx, _driver):
        sim.customer(door=3, funds=100)
        (event,) = await ctx.wait_events(1)
        assert event.data["outcome"] == "denied" and event.data["amount"] == 0
        assert sim.unlocks == []


async def test_jammed_door_is_a_failed_vend_and_an_alarm() -> None:
    async with running(VendingFaults(jammed_doors={2})) as (sim, ctx, driver):
        sim.customer(door=2, funds=1000)
        (event,) = await ctx.wait_events(1)
        assert event.data["outcome"] == "failure"
        await until(lambda: sim.vends[-1].success is False)
        assert "door_jammed:2" in driver.health().alarms


async def test_corrupt_garbage_stale_and_truncated_replies_are_survived_and_counted() -> None:
    faults = VendingFaults(corrupt_every=3, garbage_every=4, wrong_seq_every=5,
                           truncate_every=7)
    async with running(faults) as (sim, ctx, driver):
        for n in range(3):
            sim.customer(door=2, funds=1000, media_id=n)
            await ctx.wait_events(n + 1)
            await until(lambda: driver.health().details["session"] == "idle")
            sim.close_door(2)
        assert [e.data["outcome"] for e in ctx.events] == ["success"] * 3
        assert len({e.id for e in ctx.events}) == 3
        # Retransmissions were answered from the board's cache: one unlock per vend.
        assert sim.unlocks == [2, 2, 2]
        for reason in ("bad_checksum", "garbage", "out_of_sequence", "truncated"):
            assert rejected(ctx, reason) > 0, reason


async def test_dropped_and_late_replies_are_retried() -> None:
    async with running(VendingFaults(drop_every=2)) as (sim, ctx, driver):
        sim.customer(door=2, funds=1000)
        (event,) = await ctx.wait_events(1)
        assert event.data["outcome"] == "success" and sim.unlocks == [2]
        assert driver._board is not None and driver._board.retransmits > 0


async def test_silent_board_raises_timeout_and_goes_offline() -> None:
    async with running(VendingFaults(drop_every=1)) as (_sim, ctx, driver):
        await asyncio.sleep(0.5)
        assert not driver.health().online
        assert ctx.registry.get_sample_value(
            "storefleet_serial_timeouts_total", {"device": "V1"}) == 1


async def test_flood_costs_bounded_memory_and_the_cabinet_keeps_vending() -> None:
    async with running() as (sim, ctx, driver):
        await until(lambda: driver.health().online)
        for _ in range(5):
            await sim.flood(50_000)
        sim.customer(door=2, funds=1000)
        (event,) = await ctx.wait_events(1, timeout=10)
        assert event.data["outcome"] == "success"
        assert driver._board is not None
        assert driver._board._decoder.pending <= 257
        assert rejected(ctx, "garbage") > 0


async def test_unlock_command_reads_back_and_rejects_bad_args() -> None:
    async with running() as (_sim, _ctx, driver):
        await until(lambda: driver.health().online)
        # unlock is sensitive (decision 0044): it runs with a reason only
        assert await driver.handle_command("unlock", {"door": 5}, reason="restock") == {
            "door": 5, "opened": True}
        status = await driver.handle_command("status", {})
        assert status["open_doors"] == [5] and status["temperature_c"] == 4.0
        from edge_agent.drivers.base import CommandRejected
        with pytest.raises(CommandRejected):
            await driver.handle_command("unlock", {"door": "5"})


async def test_unplug_and_replug_under_the_supervisor(tmp_path: Path) -> None:
    link = tmp_path / "cabinet-by-id"
    sim, sim_task = await start_vending_sim(link=link)
    ctx = FakeContext()
    sup = DriverSupervisor(ctx, backoff_min_s=0.02, backoff_max_s=0.1)
    try:
        assert sup.configure([config(str(link))]) == []
        await until(lambda: sup.health()["V1"]["online"])
        sim.port.unplug()
        await until(lambda: not sup.health()["V1"]["online"])
        await asyncio.sleep(0.2)  # a few failed reopen attempts with backoff
        sim.port.replug()
        await until(lambda: sup.health()["V1"]["online"])
        assert sup.health()["V1"]["restarts"] >= 1
        sim.customer(door=2, funds=1000)
        (event,) = await ctx.wait_events(1)
        assert event.data["outcome"] == "success"
    finally:
        await sup.aclose()
        sim_task.cancel()
        await asyncio.gather(sim_task, return_exceptions=True)
        sim.port.close()
