"""The agent's shadow and commands, driven over the uplink broker like the cloud does."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.app import Agent
from protocols import topics
from protocols.clock import ManualClock
from protocols.codec import decode, decode_state, encode
from protocols.messages import (
    Birth,
    Command,
    CommandResult,
    RebirthRequest,
    ShadowDesired,
    ShadowReported,
)
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until, watch
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


async def cloud_publish(
    broker: Mosquitto, topic: str, payload: bytes, *, retain: bool = False
) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


def desired(version: int, **state: object) -> bytes:
    return encode(ShadowDesired(version=version, ts=1, state=dict(state)))


async def test_shadow_desired_is_applied_persisted_and_reported(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker)
    want = topics.shadow_desired(cfg.store_id)
    got = topics.shadow_reported(cfg.store_id)

    def reports() -> list[ShadowReported]:
        return [decode(p, ShadowReported) for p in seen.on(got)]

    async with watch(uplink_broker, cfg.store_id) as seen:
        async with running_agent(cfg) as agent:
            await cloud_publish(
                uplink_broker,
                want,
                desired(3, telemetry_interval_s=2.5, log_level="debug", future_knob={"x": 1}),
                retain=True,
            )
            await wait_until(lambda: len(reports()) == 1, what="report v3")
            assert reports()[0].version == 3
            assert reports()[0].state["future_knob"] == {"x": 1}  # unknown keys kept
            assert agent.telemetry.interval_s == 2.5
            assert logging.getLogger("edge_agent").level == logging.DEBUG
            assert metric(agent, "storefleet_agent_shadow_version") == 3

            await cloud_publish(uplink_broker, want, desired(2, log_level="ERROR"))  # older
            await cloud_publish(uplink_broker, want, desired(4, telemetry_interval_s=-1))  # bad
            await cloud_publish(uplink_broker, want, b'{"v":1,"version":"5"}')  # bad
            await wait_until(
                lambda: (
                    metric(
                        agent,
                        "storefleet_agent_bad_payloads_total",
                        source="cloud",
                        reason="invalid_shadow",
                    )
                    == 1
                    and metric(
                        agent,
                        "storefleet_agent_bad_payloads_total",
                        source="cloud",
                        reason="invalid_field",
                    )
                    == 1
                ),
                what="rejections counted",
            )
            assert agent.shadow.version == 3 and agent.telemetry.interval_s == 2.5
            assert len(reports()) == 1
            births = [decode_state(p) for p in seen.on(topics.state(cfg.store_id))]
            assert isinstance(births[0], Birth)
        logging.getLogger("edge_agent").setLevel(logging.NOTSET)
        # Restart: the persisted v3 is re-applied at start; the retained v3 is re-reported.
        async with running_agent(cfg) as agent:
            assert agent.shadow.version == 3 and agent.telemetry.interval_s == 2.5
            await wait_until(lambda: len(reports()) == 2, what="re-report after restart")
            assert reports()[-1].version == 3
            births = [decode_state(p) for p in seen.on(topics.state(cfg.store_id))]
            assert isinstance(births[-1], Birth) and births[-1].shadow_version == 3
    logging.getLogger("edge_agent").setLevel(logging.NOTSET)


class Cloud:
    """Sends commands to one store and collects the results."""

    def __init__(self, broker: Mosquitto, agent: Agent, clock: ManualClock) -> None:
        self.broker = broker
        self.agent = agent
        self.clock = clock
        self.n = 0

    async def send(
        self,
        name: str,
        target: str = "agent",
        ttl_ms: int = 60_000,
        cmd_id: str | None = None,
        **args: object,
    ) -> str:
        self.n += 1
        cmd_id = cmd_id or f"cmd-{self.n}"
        now = self.clock.now_ms()
        cmd = Command(cmd_id=cmd_id, name=name, args=dict(args), expires_at=now + ttl_ms, ts=now)
        await cloud_publish(
            self.broker, topics.cmd(self.agent.config.store_id, target), encode(cmd)
        )
        return cmd_id


async def test_commands_ping_diagnostics_log_level_rebirth_unknown_expired_dedupe(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    clock = ManualClock()
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker)
    res_topic = topics.cmd_res(cfg.store_id)

    async with watch(uplink_broker, cfg.store_id) as seen, running_agent(cfg, clock=clock) as agent:
        cloud = Cloud(uplink_broker, agent, clock)

        def results() -> dict[str, CommandResult]:
            return {r.cmd_id: r for r in (decode(p, CommandResult) for p in seen.on(res_topic))}

        async def run(name: str, **kw: object) -> CommandResult:
            cmd_id = await cloud.send(name, **kw)  # type: ignore[arg-type]
            await wait_until(lambda: cmd_id in results(), what=f"result of {name}")
            return results()[cmd_id]

        pong = await run("ping")
        assert pong.status == "ok" and pong.result == {"pong": True, "ts": clock.now_ms()}

        diag = await run("get_diagnostics")
        assert diag.status == "ok"
        assert diag.result["uplink_connected"] is True
        assert diag.result["bd_seq"] == 1
        assert diag.result["outbox_depth"] == 0
        assert diag.result["agent_version"] == cfg.agent_version
        assert {"uptime_s", "outbox_bytes", "outbox_oldest_age_ms", "devices"} <= set(diag.result)

        lvl = await run("set_log_level", level="warning")
        assert lvl.status == "ok" and logging.getLogger("edge_agent").level == logging.WARNING
        bad = await run("set_log_level", level="LOUD")  # refused by the argument model
        assert bad.status == "rejected" and "'level'" in (bad.error or "")
        extra = await run("set_log_level", level="info", colour="red")
        assert extra.status == "rejected" and "'colour'" in (extra.error or "")

        births_before = len(seen.on(topics.state(cfg.store_id)))
        reb = await run("rebirth")
        assert reb.status == "ok" and reb.result == {"bd_seq": 1}
        await wait_until(
            lambda: len(seen.on(topics.state(cfg.store_id))) == births_before + 1, what="rebirth"
        )

        assert (await run("self_destruct")).status == "unknown_command"
        assert (await run("ping", ttl_ms=-1)).status == "expired"
        assert (await run("ping", target="printer-1")).status == "rejected"

        # A redelivered command (same cmd_id) is not run again.
        await cloud.send("rebirth", cmd_id="once")
        await wait_until(lambda: "once" in results(), what="first run")
        count = len(seen.on(res_topic))
        await cloud.send("rebirth", cmd_id="once")
        await run("ping")  # a later command's result proves the duplicate was processed
        assert len(seen.on(res_topic)) == count + 1
        assert metric(agent, "storefleet_agent_commands_total", name="rebirth", status="duplicate")

        # Garbage on the command topic is counted, not fatal.
        await cloud_publish(uplink_broker, topics.cmd(cfg.store_id), b"{nope")
        await run("ping")
        assert (
            metric(agent, "storefleet_agent_bad_payloads_total", source="cloud", reason="not_json")
            == 1
        )
    logging.getLogger("edge_agent").setLevel(logging.NOTSET)


async def test_fleet_rebirth_request(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker)
    state = topics.state(cfg.store_id)
    async with watch(uplink_broker, cfg.store_id) as seen, running_agent(cfg):
        await wait_until(lambda: len(seen.on(state)) == 1, what="birth")
        other = RebirthRequest(ts=1, stores=["someone-else"])
        await cloud_publish(uplink_broker, topics.fleet("rebirth"), encode(other))
        everyone = RebirthRequest(ts=2)
        await cloud_publish(uplink_broker, topics.fleet("rebirth"), encode(everyone))
        await wait_until(lambda: len(seen.on(state)) == 2, what="rebirth for everyone")
        mine = RebirthRequest(ts=3, stores=[cfg.store_id])
        await cloud_publish(uplink_broker, topics.fleet("rebirth"), encode(mine))
        await wait_until(lambda: len(seen.on(state)) == 3, what="rebirth for this store")
        assert {json.loads(p)["bd_seq"] for p in seen.on(state)} == {1}
