"""Drivers wired into a real agent: config and desired shadow start them, their events
reach the uplink in the local consumer's shape, health reaches the shadow and the birth,
commands reach them, local-bus traffic reaches their handlers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import aiomqtt
import pytest

import edge_agent.drivers
from edge_agent.config import load_config
from edge_agent.drivers.base import (
    CommandRejected,
    DeviceHealth,
    Driver,
    register,
)
from edge_agent.drivers.context import AgentDriverContext
from protocols import topics
from protocols.codec import decode, decode_state, encode
from protocols.messages import (
    Birth,
    Command,
    CommandResult,
    Event,
    ShadowDesired,
    ShadowReported,
)
from tests.edge_agent.helpers import (
    device,
    device_event,
    make_config,
    metric,
    publish_events,
    running_agent,
    wait_until,
    watch,
)
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


@register
class EchoDriver(Driver):
    """A test family: echoes ``up/ping`` as ``down/pong``, emits events, breaks on ``up/boom``."""

    family = "test_echo"

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.got: list[tuple[str, str, bytes]] = []
        self.running = False

    async def run(self) -> None:
        self.ctx.on_local("echo", self.on_local)
        self.running = True
        try:
            await asyncio.Event().wait()
        finally:
            self.running = False
            # only the agent's own context runs this driver, and it has off_local
            cast(AgentDriverContext, self.ctx).off_local("echo", self.on_local)

    async def on_local(self, device_id: str, type_: str, payload: bytes) -> None:
        self.got.append((device_id, type_, payload))
        if type_ == "boom":
            raise RuntimeError("driver bug")
        await self.ctx.publish_local(topics.local("echo", device_id, "down", "pong"), payload)

    def health(self) -> DeviceHealth:
        return DeviceHealth(online=self.running, last_seen_ms=1, details={"echoes": len(self.got)})

    async def handle_command(self, name: str, args: Mapping[str, Any], *,
                             reason: str | None = None) -> dict[str, Any]:
        if name == "emit":
            event_id = await self.ctx.emit_event("device_event", device_id=self.device_id,
                                                 data={"n": args.get("n")},
                                                 event_id=args.get("event_id"))
            self.ctx.telemetry("test_echo", self.device_id, {"echo_temp_c": 21.5})
            return {"event_id": event_id}
        raise CommandRejected(self.device_id, f"unknown command {name!r}")


def test_importing_drivers_registers_every_family_present() -> None:
    assert {"beacon", "cart"} <= set(edge_agent.drivers.DRIVERS)
    assert {"beacon", "cart"} <= set(edge_agent.drivers.LOADED_FAMILIES)


def test_devices_from_the_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[agent]\nstore_id = "S9"\n'
        '[[agent.devices]]\nid = "echo-1"\nfamily = "test_echo"\nmodel = "m"\n'
        'options = { a = 1 }\n'
    )
    cfg = load_config(path, data_dir=tmp_path)
    assert [(d.device_id, d.family, d.model, dict(d.options)) for d in cfg.devices] == [
        ("echo-1", "test_echo", "m", {"a": 1})
    ]


async def command(broker: Mosquitto, store: str, target: str, name: str,
                  **args: Any) -> str:
    cmd = Command(cmd_id=f"c-{name}-{target}", name=name, args=args,
                  expires_at=10**13, ts=1)
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.publish(topics.cmd(store, target), encode(cmd), qos=1)
    return cmd.cmd_id


async def test_driver_wiring_end_to_end(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker,
                      devices=[{"id": "echo-1", "family": "test_echo", "model": "e1"}],
                      health_interval_s=0.1)
    store = cfg.store_id
    async with watch(uplink_broker, store) as seen, running_agent(cfg) as agent:
        # 1. the configured device runs, and the birth lists it (kind = family)
        await wait_until(lambda: agent.drivers.health().get("echo-1", {}).get("online"),
                         what="echo driver online")

        def births() -> list[Birth]:
            return [b for p in seen.on(topics.state(store))
                    if isinstance(b := decode_state(p), Birth)]

        await wait_until(lambda: any(d.device_id == "echo-1" and d.online and d.kind == "test_echo"
                                     for b in births() for d in b.devices), what="birth")

        # 2. a command to the device id runs on the driver; its event and telemetry go up
        ok_id = await command(uplink_broker, store, "echo-1", "emit", n=7, event_id="ev-fixed-1")
        bad_id = await command(uplink_broker, store, "echo-1", "self_destruct")
        none_id = await command(uplink_broker, store, "nope-9", "emit")

        def results() -> dict[str, CommandResult]:
            return {r.cmd_id: r for p in seen.on(topics.cmd_res(store))
                    if (r := decode(p, CommandResult))}

        await wait_until(lambda: {ok_id, bad_id, none_id} <= set(results()), what="results")
        assert results()[ok_id].status == "ok"
        assert results()[ok_id].result == {"event_id": "ev-fixed-1"}
        assert results()[bad_id].status == "rejected"
        assert results()[none_id].status == "rejected"
        evt_topic = topics.evt(store, "device_event")
        await wait_until(lambda: seen.on(evt_topic), what="driver event")
        driver_event = decode(seen.on(evt_topic)[0], Event)
        assert (driver_event.id, driver_event.device_id, driver_event.data) == (
            "ev-fixed-1", "echo-1", {"n": 7})
        await wait_until(lambda: seen.on(topics.tele(store, "test_echo", "echo-1")),
                         what="driver telemetry")

        # same event shape as a device event through the local consumer
        async with device(local_broker, "sensor", "sensor-1") as dev:
            await publish_events(dev, "sensor", "sensor-1", [device_event("device_event", n=8)])
        await wait_until(lambda: len(seen.on(evt_topic)) >= 2, what="device event")
        dev_doc = json.loads(seen.on(evt_topic)[1])
        drv_doc = json.loads(seen.on(evt_topic)[0])
        assert set(dev_doc) == set(drv_doc)
        assert drv_doc["seq"] < dev_doc["seq"]  # one seq space for both

        # 3. local traffic reaches the handler; publish_local answers; a handler bug is counted
        pongs: list[bytes] = []
        async with aiomqtt.Client(local_broker.host, local_broker.port) as client:
            await client.subscribe("store/echo/+/down/pong", qos=1)
            await client.publish(topics.local("echo", "e-7", "up", "boom"), b"x", qos=1)
            await client.publish(topics.local("echo", "e-7", "up", "ping"), b"hello", qos=1)
            async with asyncio.timeout(10):
                async for msg in client.messages:
                    pongs.append(bytes(msg.payload))  # type: ignore[arg-type]
                    break
        assert pongs == [b"hello"]
        assert metric(agent, "storefleet_local_handler_errors_total", device_kind="echo") == 1
        # the agent's own types for that kind are still the consumer's
        assert all(t in ("boom", "ping") for _, t, _ in agent.driver("echo-1").got)  # type: ignore[union-attr]

        # 4. health reaches the reported shadow
        def reported() -> list[ShadowReported]:
            return [decode(p, ShadowReported) for p in seen.on(topics.shadow_reported(store))]

        # 5. the desired shadow adds a device without code or config change
        desired = ShadowDesired(version=1, ts=1, state={"devices": {
            "echo-2": {"family": "test_echo", "model": "e2"},
            "ghost-1": {"family": "no_such_family"},
        }})
        async with aiomqtt.Client(uplink_broker.host, uplink_broker.port) as client:
            await client.publish(topics.shadow_desired(store), encode(desired), qos=1,
                                 retain=True)
        await wait_until(lambda: agent.drivers.health().get("echo-2", {}).get("online"),
                         what="echo-2 from the desired shadow")
        assert sorted(agent.drivers.device_ids()) == ["echo-1", "echo-2"]
        assert metric(agent, "storefleet_agent_bad_payloads_total",
                      source="config", reason="bad_device") >= 1
        await wait_until(lambda: any("echo-2" in r.state.get("devices_health", {})
                                     for r in reported()), what="health in reported shadow")
        last = [r for r in reported() if "echo-2" in r.state.get("devices_health", {})][-1]
        assert last.version == 1
        assert last.state["devices_health"]["echo-1"]["family"] == "test_echo"
        assert last.state["devices_health"]["echo-2"]["model"] == "e2"
        await wait_until(lambda: any(d.device_id == "echo-2" for b in births()
                                     for d in b.devices), what="echo-2 in a birth")
        assert metric(agent, "storefleet_device_up", family="test_echo", device_id="echo-2") == 1
