"""ESL access-point firmware updates over the real local bus (Mosquitto) against the
simulated AP's bootloader (decision 0039): a good image, a bad one, a lost chunk, an
interrupted transfer that resumes from the AP's acked offset, and the refusals."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.drivers.base import CommandRejected, DeviceConfig
from edge_agent.drivers.esl import EslDriver
from firmware_sim.esl import EslApSim, start_esl_ap_sim
from tests.edge_agent.drivers.esl.mqtt_context import MqttContext
from tests.edge_agent.helpers import wait_until
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

LABELS = ["L1", "L2"]
CHUNK = 1024


def image(tmp_path: Path, size: int = 32 * CHUNK, *, name: str = "ap-2.0.0.bin") -> Path:
    path = tmp_path / "cas" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(size).randbytes(size))
    return path


def args(path: Path, version: str = "2.0.0", sha256: str | None = None) -> dict[str, Any]:
    return {"path": str(path), "version": version,
            "sha256": sha256 or hashlib.sha256(path.read_bytes()).hexdigest()}


def make_driver(ctx: MqttContext, **options: object) -> EslDriver:
    opts = {"labels": {label: f"SKU{i}" for i, label in enumerate(LABELS)},
            "tick_s": 0.05, "fw_chunk_size": CHUNK, "fw_window": 4,
            "fw_ack_timeout_s": 0.3, **options}
    return EslDriver(DeviceConfig(device_id="AP1", family="esl", options=opts), ctx)


@contextlib.asynccontextmanager
async def running(mosquitto: Mosquitto, tmp_path: Path, **options: object,
                  ) -> AsyncIterator[tuple[EslApSim, MqttContext, EslDriver]]:
    async with MqttContext(host=mosquitto.host, port=mosquitto.port,
                           data_dir=tmp_path) as ctx:
        sim = await start_esl_ap_sim(mosquitto.url, ap_id="AP1", labels=LABELS,
                                     checkin_interval_s=0.2, miss_prob=0.0,
                                     status_interval_s=0.1, tick_s=0.05)
        drv = make_driver(ctx, **options)
        task = asyncio.create_task(drv.run(), name="esl-driver-under-test")
        try:
            await wait_until(lambda: drv.health().online, what="AP status seen")
            yield sim, ctx, drv
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await sim.aclose()


def resent(ctx: MqttContext) -> float:
    return ctx.registry.get_sample_value(
        "storefleet_firmware_resent_total", {"family": "esl", "device": "AP1"}) or 0.0


async def test_good_image_reboots_the_ap_into_the_new_version(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with running(mosquitto, tmp_path) as (sim, ctx, drv):
        assert drv.health().details["firmware_version"] == "1.0.0"
        boot = sim.boot_id
        path = image(tmp_path)
        result = await drv.handle_command("firmware_update", args(path))
        assert result["outcome"] == "ok" and result["version"] == "2.0.0"
        assert result["resumed_from"] == 0
        assert sim.fw == "2.0.0" and sim.boot_id != boot  # it rebooted into the image
        (event,) = [e for e in ctx.events if e.kind == "firmware_update"]
        assert event.data["outcome"] == "ok" and event.data["from_version"] == "1.0.0"
        assert event.data["version"] == "2.0.0" and event.data["size"] == 32 * CHUNK
        seen = sim.stats["status"]
        await wait_until(lambda: sim.stats["status"] >= seen + 2,
                         what="statuses after the reboot")
        await asyncio.sleep(0.05)  # the last one delivered
        details = drv.health().details
        assert details["firmware_version"] == "2.0.0"  # as the AP's own status says
        assert details["update"]["state"] == "done"
        assert details["update"]["done_bytes"] == 32 * CHUNK
        assert not (tmp_path / "firmware" / "AP1.json").exists()  # the finished job is gone
        assert ctx.registry.get_sample_value(
            "storefleet_firmware_updates_total", {"family": "esl", "outcome": "ok"}) == 1


async def test_bad_image_is_refused_and_the_old_version_keeps_running(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with running(mosquitto, tmp_path) as (sim, ctx, drv):
        path = image(tmp_path)
        boot = sim.boot_id
        result = await drv.handle_command("firmware_update",
                                          args(path, sha256="0" * 64))  # not this image
        assert result["outcome"] == "bad_image" and result["version"] == "1.0.0"
        assert sim.fw == "1.0.0" and sim.boot_id == boot and sim.bootloader.staged is None
        details = drv.health().details
        assert details["firmware_version"] == "1.0.0"
        assert details["update"]["state"] == "failed"
        assert details["update"]["outcome"] == "bad_image"
        (event,) = [e for e in ctx.events if e.kind == "firmware_update"]
        assert event.data["outcome"] == "bad_image" and "sha256" in event.data["detail"]


async def test_a_lost_chunk_is_sent_again_from_the_acked_offset(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with running(mosquitto, tmp_path) as (sim, ctx, drv):
        sim.bootloader.lose_once = {5 * CHUNK}  # the radio eats this chunk once
        result = await drv.handle_command("firmware_update", args(image(tmp_path)))
        assert result["outcome"] == "ok" and sim.fw == "2.0.0"
        offsets = [o for op, o in sim.bootloader.log if op == "chunk"]
        assert offsets.count(5 * CHUNK) == 2  # lost, then sent again
        assert resent(ctx) >= 1


async def test_an_interrupted_transfer_resumes_from_the_acked_offset_after_a_restart(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    size = 64 * CHUNK
    stall = 20 * CHUNK
    path = image(tmp_path, size)
    async with MqttContext(host=mosquitto.host, port=mosquitto.port,
                           data_dir=tmp_path) as ctx:
        sim = await start_esl_ap_sim(mosquitto.url, ap_id="AP1", labels=LABELS,
                                     checkin_interval_s=0.2, miss_prob=0.0,
                                     status_interval_s=0.1, tick_s=0.05)
        try:
            sim.bootloader.stall_at = stall  # the AP stops taking chunks here
            first = make_driver(ctx, fw_max_stalls=1000)
            run1 = asyncio.create_task(first.run(), name="esl-driver-first")
            cmd = asyncio.create_task(first.handle_command("firmware_update", args(path)),
                                      name="firmware-command")
            await wait_until(lambda: first.firmware.state.done_bytes == stall,
                             what="transfer stalled at the AP")
            saved = json.loads((tmp_path / "firmware" / "AP1.json").read_text())
            assert saved["version"] == "2.0.0" and saved["size"] == size
            # the agent stops mid-transfer (restart, crash of the driver)
            for task in (cmd, run1):
                task.cancel()
            await asyncio.gather(cmd, run1, return_exceptions=True)
            ctx.off_local("esl_ap", first._on_local)
            await asyncio.sleep(0.3)  # what the first driver had in flight lands (stalled)
            assert not [e for e in ctx.events if e.kind == "firmware_update"]
            log_before = len(sim.bootloader.log)
            sim.bootloader.stall_at = None

            second = make_driver(ctx)  # a new driver: it knows the job only from disk
            run2 = asyncio.create_task(second.run(), name="esl-driver-second")
            try:
                (event,) = await ctx.wait_events(1, timeout=10)
            finally:
                run2.cancel()
                await asyncio.gather(run2, return_exceptions=True)
        finally:
            await sim.aclose()
    assert event.kind == "firmware_update" and event.data["outcome"] == "ok"
    resumed = event.data["resumed_from"]
    assert resumed == stall
    assert sim.fw == "2.0.0"
    begins = [i for i, (op, _) in enumerate(sim.bootloader.log) if op == "begin"]
    assert len(begins) == 2 and begins[1] >= log_before
    after = sim.bootloader.log[begins[1]:]
    assert after[0] == ("begin", resumed)  # the AP said where it stood ...
    assert min(o for op, o in after if op == "chunk") == resumed  # ... nothing before it
    assert saved["update_id"] == event.data["update_id"]


async def test_refused_while_a_price_book_is_reaching_the_shelf(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with running(mosquitto, tmp_path, stale_after_s=600) as (sim, _ctx, drv):
        sim.interval_ms = 3_600_000  # labels asleep: the price book stays pending
        for label in sim.labels.values():
            label.next_ms = sim.now_ms() + sim.interval_ms
        assert drv.busy_reason() is None
        drv.set_price_book(1, {"SKU0": {"price_minor": 100}, "SKU1": {"price_minor": 200}})
        # a rollout defers on the same rule (decision 0043)
        assert drv.busy_reason() == ("a price book is still reaching the shelf "
                                     "(2 label(s) pending)")
        with pytest.raises(CommandRejected) as refused:
            await drv.handle_command("firmware_update", args(image(tmp_path)))
        assert refused.value.reason == "busy" and "2 label(s) pending" in refused.value.detail
        assert sim.bootloader.log == []  # nothing reached the AP


async def test_an_image_outside_the_data_folder_or_without_sha256_is_refused(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    elsewhere = tmp_path.parent / f"{tmp_path.name}-outside.bin"
    elsewhere.write_bytes(b"x" * 10)
    async with running(mosquitto, tmp_path / "data") as (sim, _ctx, drv):
        with pytest.raises(CommandRejected) as outside:
            await drv.handle_command("firmware_update", args(elsewhere))
        assert outside.value.field == "path" and "outside" in outside.value.detail
        inside = image(tmp_path / "data")
        with pytest.raises(CommandRejected) as no_sha:
            await drv.handle_command("firmware_update", {"path": str(inside),
                                                         "version": "2.0.0"})
        assert no_sha.value.field == "sha256"
        with pytest.raises(CommandRejected) as bad_version:
            await drv.handle_command("firmware_update", args(inside, version="../x"))
        assert bad_version.value.field == "version"
        assert sim.bootloader.log == []
    elsewhere.unlink()
