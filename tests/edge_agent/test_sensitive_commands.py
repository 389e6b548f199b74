"""Sensitive commands on the box (decision 0044): the drivers declare them where the
cloud's table (protocols.commands) says, the box refuses one that arrives without a
reason (counted, logged, the door stays shut) and logs who sent each command and why."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

import edge_agent.drivers
from edge_agent.drivers.base import DRIVERS
from firmware_sim.vending import start_vending_sim
from protocols import topics
from protocols.codec import decode, encode
from protocols.commands import SENSITIVE_COMMANDS
from protocols.messages import Command, CommandResult, CommandSender
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until, watch
from tests.edge_agent.test_shadow_commands import cloud_publish
from tests.services import Mosquitto

DOOR = 3


def test_every_sensitive_driver_command_is_in_the_shared_table_and_back() -> None:
    """What the API treats as sensitive is exactly what the drivers declare so."""
    assert "vending" in edge_agent.drivers.LOADED_FAMILIES  # importing it loads them all
    in_drivers = {(family, name) for family, cls in DRIVERS.items()
                  for name, spec in cls.commands.items() if spec.sensitive}
    assert in_drivers == {(c.family, c.name) for c in SENSITIVE_COMMANDS}
    assert ("printer", "open_drawer") in in_drivers and ("vending", "unlock") in in_drivers


@pytest.mark.mosquitto
async def test_the_box_refuses_a_sensitive_command_without_a_reason_and_logs_who_and_why(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cabinet, cabinet_task = await start_vending_sim()
    devices = [{"id": "vend-1", "family": "vending", "options": {
        "port": cabinet.port.path, "poll_interval_s": 0.01, "reply_timeout_s": 0.1}}]
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker, devices=devices)
    res_topic = topics.cmd_res(cfg.store_id)
    ann = CommandSender(name="ann", role="store-manager")
    logging.getLogger("edge_agent").setLevel(logging.INFO)  # as `fleet cmd set_log_level`
    try:
        async with watch(uplink_broker, cfg.store_id) as seen, running_agent(cfg) as agent:
            await wait_until(lambda: agent.drivers.health().get("vend-1", {}).get("online"),
                             what="cabinet online")

            async def send(cmd_id: str, reason: str | None) -> CommandResult:
                now = int(time.time() * 1000)
                cmd = Command(cmd_id=cmd_id, name="unlock", args={"door": DOOR},
                              expires_at=now + 60_000, ts=now, sender=ann, reason=reason)
                await cloud_publish(uplink_broker, topics.cmd(cfg.store_id, "vend-1"),
                                    encode(cmd))

                def result() -> CommandResult | None:
                    got = [r for r in (decode(p, CommandResult) for p in seen.on(res_topic))
                           if r.cmd_id == cmd_id]
                    return got[0] if got else None

                await wait_until(lambda: result() is not None, what=f"result of {cmd_id}")
                answer = result()
                assert answer is not None
                return answer

            for cmd_id, reason in (("no-reason", None), ("blank-reason", "   ")):
                refused = await send(cmd_id, reason)
                assert refused.status == "rejected", refused
                assert "without a reason" in (refused.error or "")
            assert cabinet.unlocks == []  # no driver code ran
            assert metric(agent, "storefleet_driver_commands_total", family="vending",
                          result="reason_required") == 2
            assert metric(agent, "storefleet_agent_commands_total", name="unlock",
                          status="rejected") == 2

            done = await send("with-reason", "restock door 3, ticket 4711")
            assert done.status == "ok" and done.result == {"door": DOOR, "opened": True}
            assert cabinet.unlocks == [DOOR]
            lines = [ln["message"] for ln in agent.logs.lines(limit=200)["lines"]]
            assert any("command unlock with-reason -> ok (sent by ann (store-manager), "
                       "reason: 'restock door 3, ticket 4711')" in ln for ln in lines), lines
            assert any("command unlock no-reason -> rejected (sent by ann (store-manager))"
                       in ln and "without a reason" in ln for ln in lines), lines
    finally:
        logging.getLogger("edge_agent").setLevel(logging.NOTSET)
        cabinet_task.cancel()
        await asyncio.gather(cabinet_task, return_exceptions=True)
        cabinet.port.close()
