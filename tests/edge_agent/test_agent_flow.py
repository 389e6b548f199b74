"""Local bus -> outbox -> uplink, against two real Mosquitto brokers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiomqtt
import pytest

from protocols import topics
from protocols.codec import decode, decode_state, encode
from protocols.messages import Birth, Event, Sample, Telemetry
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


async def test_device_events_reach_the_cloud_with_seq_and_unique_ids(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker)
    sent = [device_event("sale", total=100 + i) for i in range(50)]
    async with (
        watch(uplink_broker, cfg.store_id) as seen,
        running_agent(cfg) as agent,
        device(local_broker, "pos", "pos-1") as pos,
    ):
        await publish_events(pos, "pos", "pos-1", sent)
        evt_topic = topics.evt(cfg.store_id, "sale")
        await wait_until(lambda: len(seen.on(evt_topic)) >= 50, what="50 events upstream")
        await wait_until(lambda: agent.outbox.depth() == 0, what="outbox drained")
        assert metric(agent, "storefleet_events_published_total") == 50
        assert metric(agent, "storefleet_uplink_connected") == 1
    events = [decode(p, Event) for p in seen.on(evt_topic)]
    assert [e.id for e in events] == [e.id for e in sent]  # all, once, in order
    assert [e.seq for e in events] == list(range(1, 51))
    assert {e.store_id for e in events} == {cfg.store_id}
    assert {e.device_id for e in events} == {"pos-1"}
    assert not any(e.historical for e in events)
    assert events[7].data == {"total": 107}


async def test_birth_lists_devices_and_is_republished_when_they_change(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker)
    state_topic = topics.state(cfg.store_id)

    def births() -> list[Birth]:
        return [b for b in map(decode_state, seen.on(state_topic)) if isinstance(b, Birth)]

    async with watch(uplink_broker, cfg.store_id) as seen, running_agent(cfg) as agent:
        await wait_until(lambda: len(births()) == 1, what="first birth")
        assert births()[0].devices == [] and births()[0].agent_version == cfg.agent_version
        async with device(local_broker, "cart", "cart-7"):
            await wait_until(
                lambda: any(d.device_id == "cart-7" and d.online for d in births()[-1].devices),
                what="birth with cart-7 online",
            )
            assert metric(agent, "storefleet_local_devices_online") == 1
        # Leaving without DISCONNECT would fire the Will; a clean exit leaves the retained
        # "online" state, so publish offline explicitly like a device shutting down.
        async with aiomqtt.Client(local_broker.host, local_broker.port) as c:
            await c.publish(
                topics.local("cart", "cart-7", "up", "state"),
                b'{"v":1,"online":false}',
                qos=1,
                retain=True,
            )
        await wait_until(
            lambda: [d.online for d in births()[-1].devices] == [False], what="birth offline"
        )
        assert metric(agent, "storefleet_local_devices_online") == 0
        assert len({b.bd_seq for b in births()}) == 1  # rebirths keep the session's bd_seq


async def test_telemetry_is_batched_per_device_and_forwarded(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker, telemetry_interval_s=0.5)
    now = int(time.time() * 1000)
    async with (
        watch(uplink_broker, cfg.store_id) as seen,
        running_agent(cfg) as agent,
        device(local_broker, "beacon", "b-1") as beacon,
    ):
        for i in range(5):
            tele = Telemetry(
                device_id="b-1",
                device_kind="beacon",
                samples=[Sample(ts=now + i, values={"battery": 90 - i})],
            )
            await beacon.publish(topics.local("beacon", "b-1", "up", "tele"), encode(tele))
        topic = topics.tele(cfg.store_id, "beacon", "b-1")
        await wait_until(
            lambda: sum(len(decode(p, Telemetry).samples) for p in seen.on(topic)) == 5,
            what="5 samples upstream",
        )
        assert len(seen.on(topic)) < 5  # batched
        assert metric(agent, "storefleet_telemetry_forwarded_total") == 5
        assert agent.outbox.depth() == 0  # telemetry never touches the outbox


async def test_malformed_local_messages_are_counted_and_the_agent_goes_on(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker)
    good = device_event("vend", slot="A1")
    async with (
        watch(uplink_broker, cfg.store_id) as seen,
        running_agent(cfg) as agent,
        aiomqtt.Client(local_broker.host, local_broker.port) as dev,
    ):
        evt = topics.local("vending", "v-1", "up", "evt")
        bad = [
            (evt, b"not json"),
            (evt, b'{"v":1,"id":"x1","kind":"no_such_kind","ts":1}'),
            (evt, b'{"v":1,"kind":"sale","ts":1}'),
            (evt, b"[1,2]"),
            (evt, b"x" * 300_000),
            (topics.local("vending", "v-1", "up", "bogus"), b"{}"),
            ("store/vending/v-1/up/evt/extra", encode(device_event())),
            (topics.local("vending", "v-1", "up", "tele"), b'{"v":1}'),
        ]
        for topic, payload in bad:
            await dev.publish(topic, payload, qos=1)
        await dev.publish(evt, encode(good), qos=1)
        evt_up = topics.evt(cfg.store_id, "vend")
        await wait_until(lambda: len(seen.on(evt_up)) == 1, what="the good event")
        assert decode(seen.on(evt_up)[0], Event).id == good.id

        def bad_count(reason: str) -> float:
            return metric(
                agent, "storefleet_agent_bad_payloads_total", source="local", reason=reason
            )

        assert bad_count("not_json") == 1
        assert bad_count("unknown_kind") == 1
        assert bad_count("missing_field") == 2  # no id; telemetry without fields
        assert bad_count("invalid_field") == 1
        assert bad_count("too_large") == 1
        assert bad_count("unknown_type") == 1
        assert bad_count("bad_topic") == 1
        assert agent.local.connected and agent.uplink.connected


async def test_embedded_local_bus(tmp_path: Path, uplink_broker: Mosquitto) -> None:
    from tests.services import free_port

    port = free_port()
    cfg = make_config(tmp_path, uplink=uplink_broker, local=None, local_bus_port=port)
    sent = [device_event("coupon_issued", code=f"C{i}") for i in range(20)]
    async with watch(uplink_broker, cfg.store_id) as seen, running_agent(cfg) as agent:
        assert agent.broker is not None and agent.broker.url == f"mqtt://127.0.0.1:{port}"
        async with aiomqtt.Client("127.0.0.1", port) as dev:
            await publish_events(dev, "kiosk", "k-1", sent)
        topic = topics.evt(cfg.store_id, "coupon_issued")
        await wait_until(lambda: len(seen.on(topic)) == 20, what="20 events via amqtt")
    ids = [json.loads(p)["id"] for p in seen.on(topic)]
    assert ids == [e.id for e in sent]


async def test_local_flood_beyond_the_queue_bound_loses_nothing(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    # A tiny receive queue: a burst overflows it; unacked QoS 1 messages must come back.
    cfg = make_config(
        tmp_path, uplink=uplink_broker, local=local_broker, local_queue_max=10, local_batch_max=5
    )
    sent = [device_event("sale", n=i) for i in range(400)]
    async with watch(uplink_broker, cfg.store_id) as seen, running_agent(cfg) as agent:
        async with aiomqtt.Client(
            local_broker.host, local_broker.port, max_inflight_messages=len(sent)
        ) as dev:
            dev.pending_calls_threshold = len(sent)  # one burst, all in flight at once
            local_topic = topics.local("pos", "p-2", "up", "evt")
            await asyncio.gather(*(dev.publish(local_topic, encode(e), qos=1) for e in sent))
        topic = topics.evt(cfg.store_id, "sale")
        await wait_until(
            lambda: {json.loads(p)["id"] for p in seen.on(topic)} == {e.id for e in sent},
            within_s=30,
            what="all 400 events despite overflow",
        )
        assert metric(agent, "storefleet_local_messages_dropped_total", qos="1") > 0


async def test_agent_as_a_context_manager_and_metrics_port(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    import urllib.request

    from prometheus_client import CollectorRegistry

    from edge_agent.app import Agent
    from tests.services import free_port

    port = free_port()
    cfg = make_config(
        tmp_path, uplink=uplink_broker, local=local_broker, metrics_port=port,
        metrics_host="127.0.0.1",
    )  # fmt: skip
    async with Agent(cfg, registry=CollectorRegistry()) as agent:
        await wait_until(lambda: agent.uplink.connected, what="connected")
        assert agent.metrics_port == port

        def scrape() -> bytes:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return bytes(r.read())

        text = await asyncio.to_thread(scrape)
        assert b"storefleet_uplink_connected 1.0" in text
    assert not agent.ready.is_set()
