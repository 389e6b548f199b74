"""Device firmware updates through the real agent (decision 0039): commands through the
supervisor, the image under the agent's data folder, the outcome as a
``firmware_update`` event on the uplink broker (through the outbox) and the version in
the devices' health. The ESL transfer survives a real agent restart: the second agent
resumes from the offset the access point acked."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import pytest

from edge_agent.drivers.esl import EslDriver
from firmware_sim.esl import start_esl_ap_sim
from firmware_sim.vending import start_vending_sim
from protocols import topics
from protocols import vending as v
from protocols.codec import decode
from protocols.messages import Event
from tests.edge_agent.helpers import make_config, running_agent, wait_until, watch
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

CHUNK = 1024


async def test_esl_update_resumes_across_an_agent_restart_and_vending_updates(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cabinet, cabinet_task = await start_vending_sim()
    ap = await start_esl_ap_sim(local_broker.url, ap_id="AP1", labels=["L1"],
                                checkin_interval_s=0.2, miss_prob=0.0,
                                status_interval_s=0.1, tick_s=0.05)
    devices = [
        {"id": "AP1", "family": "esl", "options": {
            "tick_s": 0.05, "fw_chunk_size": CHUNK, "fw_ack_timeout_s": 0.2,
            "fw_max_stalls": 1000}},
        {"id": "vend-1", "family": "vending", "options": {
            "port": cabinet.port.path, "poll_interval_s": 0.01, "reply_timeout_s": 0.1}},
    ]
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker, devices=devices,
                      health_interval_s=0.1)
    cas = cfg.data_dir / "cas"
    cas.mkdir(parents=True)
    esl_image = cas / "esl.bin"
    esl_image.write_bytes(random.Random(2).randbytes(48 * CHUNK))
    vend_image = cas / "vend.bin"
    vend_image.write_bytes(v.firmware_image(random.Random(3).randbytes(1000)))
    stall = 16 * CHUNK
    ap.bootloader.stall_at = stall
    evt = topics.evt(cfg.store_id, "firmware_update")
    try:
        async with watch(uplink_broker, cfg.store_id) as seen:
            async with running_agent(cfg) as first:
                await wait_until(lambda: first.drivers.health().get("AP1", {}).get("online"),
                                 what="AP online")
                esl = first.driver("AP1")
                assert isinstance(esl, EslDriver)
                command = asyncio.create_task(first.drivers.command("AP1", "firmware_update", {
                    "path": str(esl_image), "version": "3.1.0",
                    "sha256": hashlib.sha256(esl_image.read_bytes()).hexdigest()}),
                    name="esl-firmware-command")
                await wait_until(lambda: esl.firmware.state.done_bytes == stall,
                                 what="transfer stalled at the AP")
                # the vending board updates meanwhile, through the same supervisor
                await wait_until(lambda: first.drivers.health().get("vend-1", {}).get(
                    "firmware_version") == "1.0.0", what="board version read")
                result = await first.drivers.command("vend-1", "firmware_update", {
                    "path": str(vend_image), "version": "1.1.0"})
                assert result["outcome"] == "ok" and cabinet.firmware_version == "1.1.0"
                await wait_until(lambda: first.drivers.health()["vend-1"][
                    "firmware_version"] == "1.1.0", what="vending health")
                command.cancel()  # the agent stops with the ESL transfer half done
                await asyncio.gather(command, return_exceptions=True)
            assert (cfg.data_dir / "firmware" / "AP1.json").exists()
            ap.bootloader.stall_at = None
            async with running_agent(cfg) as second:
                await wait_until(lambda: len(seen.on(evt)) == 2, within_s=20,
                                 what="both firmware_update events")
                await wait_until(lambda: second.drivers.health().get("AP1", {}).get(
                    "firmware_version") == "3.1.0", what="AP reports 3.1.0")
        events = {e.device_id: e for e in (decode(p, Event) for p in seen.on(evt))}
        assert events["vend-1"].data["outcome"] == "ok"
        assert events["AP1"].data["outcome"] == "ok" and ap.fw == "3.1.0"
        assert events["AP1"].data["resumed_from"] >= stall  # not from zero
        begins = [o for op, o in ap.bootloader.log if op == "begin"]
        assert begins[0] == 0 and begins[-1] == events["AP1"].data["resumed_from"]
        assert not (cfg.data_dir / "firmware" / "AP1.json").exists()
    finally:
        await ap.aclose()
        cabinet_task.cancel()
        await asyncio.gather(cabinet_task, return_exceptions=True)
        cabinet.port.close()
