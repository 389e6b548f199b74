"""Vending board firmware updates over a real pty + pyserial against the simulated
board's bootloader (decision 0039): a good image, a block damaged on its way (sent
again), a bad image (refused, the old firmware runs on), an image that does not start
(the board falls back), and the refusal while a customer is mid-vend."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import pytest

from edge_agent.drivers.base import CommandRejected
from edge_agent.drivers.testing import FakeContext
from edge_agent.drivers.vending import VendingDriver
from firmware_sim.vending import VendingCabinetSim, VendingFaults
from protocols import vending as v
from tests.edge_agent.drivers.vending.test_vending_driver import running, until

BODY = 3000  # bytes: 24 blocks of the board's 128


def image(ctx: FakeContext, tmp_path: Path, *, bad: bool = False) -> Path:
    ctx.data_dir = tmp_path
    raw = bytearray(v.firmware_image(random.Random(1).randbytes(BODY)))
    if bad:
        raw[100] ^= 0xFF  # the image no longer matches its own CRC-32
    path = tmp_path / "cas" / ("bad.bin" if bad else "good.bin")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(raw))
    return path


def args(path: Path, **extra: Any) -> dict[str, Any]:
    return {"path": str(path), "version": "2.0.0", **extra}


def fw_events(ctx: FakeContext) -> list[dict[str, Any]]:
    return [e.data for e in ctx.events if e.kind == "firmware_update"]


async def ready(driver: VendingDriver) -> None:
    await until(lambda: driver.health().details["firmware_version"] == "1.0.0")


async def test_good_image_reboots_the_board_into_the_new_version(tmp_path: Path) -> None:
    async with running() as (sim, ctx, driver):
        await ready(driver)
        path = image(ctx, tmp_path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        result = await driver.handle_command("firmware_update", args(path, sha256=sha))
        assert result["outcome"] == "ok" and result["version"] == "2.0.0"
        assert sim.firmware_version == "2.0.0" and sim.reboots == 1
        assert sim.bootloader.blocks == list(range(24))  # each block once, in order
        details = driver.health().details
        assert details["firmware_version"] == "2.0.0"
        assert details["update"]["state"] == "done"
        assert details["update"]["done_bytes"] == BODY + 4
        (event,) = fw_events(ctx)
        assert event["outcome"] == "ok" and event["from_version"] == "1.0.0"
        assert event["version"] == "2.0.0" and event["family"] == "vending"
        # the reader is polled again: a customer buys as before
        sim.customer(door=2, funds=1000)
        await until(lambda: any(e.kind == "vend" for e in ctx.events))
        assert ctx.registry.get_sample_value(
            "storefleet_firmware_updates_total", {"family": "vending", "outcome": "ok"}) == 1


async def test_a_block_damaged_on_its_way_is_sent_again(tmp_path: Path) -> None:
    async with running(VendingFaults(corrupt_blocks={3, 17})) as (sim, ctx, driver):
        await ready(driver)
        result = await driver.handle_command("firmware_update", args(image(ctx, tmp_path)))
        assert result["outcome"] == "ok" and sim.firmware_version == "2.0.0"
        blocks = sim.bootloader.blocks
        assert blocks.count(3) == 2 and blocks.count(17) == 2 and len(blocks) == 26
        assert sim.bootloader.stats["bad_crc"] == 2
        assert ctx.registry.get_sample_value(
            "storefleet_firmware_resent_total", {"family": "vending", "device": "V1"}) == 2


async def test_a_bad_image_is_refused_and_the_old_firmware_keeps_running(
    tmp_path: Path,
) -> None:
    async with running() as (sim, ctx, driver):
        await ready(driver)
        result = await driver.handle_command("firmware_update",
                                             args(image(ctx, tmp_path, bad=True)))
        assert result["outcome"] == "bad_image" and result["version"] == "1.0.0"
        assert sim.firmware_version == "1.0.0" and sim.reboots == 0
        assert sim.bootloader.stats["bad_image"] == 1
        details = driver.health().details
        assert details["firmware_version"] == "1.0.0"
        assert details["update"]["outcome"] == "bad_image"
        (event,) = fw_events(ctx)
        assert event["outcome"] == "bad_image" and "keeps 1.0.0" in event["detail"]
        sim.customer(door=2, funds=1000)  # and it still sells
        await until(lambda: any(e.kind == "vend" for e in ctx.events))


async def test_an_image_that_does_not_start_falls_back_to_the_old_one(
    tmp_path: Path,
) -> None:
    async with running(VendingFaults(boot_fails=True)) as (sim, ctx, driver):
        await ready(driver)
        result = await driver.handle_command("firmware_update", args(image(ctx, tmp_path)))
        assert result["outcome"] == "fell_back" and result["version"] == "1.0.0"
        assert sim.reboots == 1 and sim.firmware_version == "1.0.0"
        assert driver.health().details["firmware_version"] == "1.0.0"
        assert fw_events(ctx)[0]["outcome"] == "fell_back"


async def test_a_wrong_sha256_sends_nothing(tmp_path: Path) -> None:
    async with running() as (sim, ctx, driver):
        await ready(driver)
        result = await driver.handle_command("firmware_update",
                                             args(image(ctx, tmp_path), sha256="0" * 64))
        assert result["outcome"] == "bad_image" and sim.bootloader.blocks == []
        assert sim.bootloader.size is None


async def test_refused_while_a_customer_is_mid_vend(tmp_path: Path) -> None:
    async with running() as (sim, ctx, driver):
        await ready(driver)
        path = image(ctx, tmp_path)
        sim.tap(funds=1000)  # the card is tapped; the customer is still choosing
        await until(lambda: driver.health().details["session"] == "session")
        with pytest.raises(CommandRejected) as refused:
            await driver.handle_command("firmware_update", args(path))
        assert refused.value.reason == "busy"
        assert sim.bootloader.size is None and sim.bootloader.blocks == []
        assert driver.health().details["update"]["state"] == "idle"
        assert not fw_events(ctx)


async def test_the_board_itself_refuses_to_start_an_update_during_a_session() -> None:
    # the board's request handling alone (no port needed): a second line of defence
    sim = VendingCabinetSim(None)  # type: ignore[arg-type]
    sim.session_open = True
    reply = sim._handle(v.Frame(7, v.Cmd.FW_START, v.fw_start_payload(100, "2.0.0")))
    assert reply.cmd == v.Cmd.ERROR and reply.payload == bytes((v.ErrorCode.BUSY,))
