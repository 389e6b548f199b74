"""Uplink outages, PUBACK-gated draining, birth/death and bd_seq."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from edge_agent.app import Agent
from protocols import topics
from protocols.codec import decode, decode_state
from protocols.messages import Birth, Death, Event
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


async def test_events_wait_in_the_outbox_while_the_uplink_is_down(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker)
    live = [device_event("sale", n=i) for i in range(5)]
    offline = [device_event("sale", n=100 + i) for i in range(30)]
    topic = topics.evt(cfg.store_id, "sale")
    async with running_agent(cfg) as agent, device(local_broker, "pos", "pos-1") as pos:
        async with watch(uplink_broker, cfg.store_id) as seen:
            await publish_events(pos, "pos", "pos-1", live)
            await wait_until(lambda: len(seen.on(topic)) == 5, what="live events")
            await wait_until(lambda: agent.outbox.depth() == 0, what="live events acknowledged")
        uplink_broker.stop()
        await wait_until(lambda: not agent.uplink.connected, what="uplink down")
        assert metric(agent, "storefleet_uplink_connected") == 0

        await publish_events(pos, "pos", "pos-1", offline)
        await wait_until(lambda: agent.outbox.depth() == 30, what="30 events in the outbox")
        assert metric(agent, "storefleet_outbox_depth") == 30
        assert metric(agent, "storefleet_outbox_bytes") > 0
        assert metric(agent, "storefleet_events_published_total") == 5

        uplink_broker.start()
        async with watch(uplink_broker, cfg.store_id) as seen:
            await wait_until(lambda: agent.outbox.depth() == 0, within_s=15, what="drained")
            await wait_until(lambda: len(seen.on(topic)) >= 30, what="replayed events")
        events = [decode(p, Event) for p in seen.on(topic)]
        assert [e.id for e in events] == [e.id for e in offline]
        assert all(e.historical for e in events)
        assert [e.seq for e in events] == list(range(6, 36))
        assert metric(agent, "storefleet_events_published_total") == 35


async def test_unacknowledged_rows_stay_and_survive_an_agent_restart(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker, shutdown_drain_s=0.1)
    sent = [device_event("refund", n=i) for i in range(10)]
    uplink_broker.stop()
    async with running_agent(cfg, connected=False) as agent:
        await wait_until(lambda: agent.local.connected, what="local bus")
        async with device(local_broker, "pos", "pos-9") as pos:
            await publish_events(pos, "pos", "pos-9", sent)
            await wait_until(lambda: agent.outbox.depth() == 10, what="enqueued")
    # The agent stopped with 10 rows it could not send; a new run finds and sends them.
    uplink_broker.start()
    topic = topics.evt(cfg.store_id, "refund")
    async with watch(uplink_broker, cfg.store_id) as seen, running_agent(cfg) as agent:
        await wait_until(lambda: len(seen.on(topic)) == 10, what="sent after restart")
        await wait_until(lambda: agent.outbox.depth() == 0, what="drained")
    events = [decode(p, Event) for p in seen.on(topic)]
    assert [e.id for e in events] == [e.id for e in sent]
    assert all(e.historical for e in events)


def _cut_uplink(agent: Agent) -> None:
    """Drop the uplink's TCP connection without an MQTT DISCONNECT (a network failure)."""
    link = agent.uplink._link
    assert link is not None
    sock = link._client._client.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)


async def test_birth_and_death_pair_up_with_increasing_bd_seq(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker)
    state = topics.state(cfg.store_id)
    started_ms = int(time.time() * 1000)
    async with watch(uplink_broker, cfg.store_id) as seen:

        def states() -> list[Birth | Death]:
            return [decode_state(p) for p in seen.on(state)]

        async with running_agent(cfg) as agent:
            await wait_until(lambda: len(states()) == 1, what="birth 1")
            assert isinstance(states()[0], Birth) and states()[0].bd_seq == 1
            _cut_uplink(agent)
            await wait_until(lambda: len(states()) >= 3, what="death 1 + birth 2")
            assert [(type(s).__name__, s.bd_seq) for s in states()[:3]] == [
                ("Birth", 1),
                ("Death", 1),
                ("Birth", 2),
            ]
            assert metric(agent, "storefleet_uplink_connects_total") == 2
        # A clean stop publishes the Death itself.
        await wait_until(lambda: len(states()) == 4, what="clean death")
        last = states()[-1]
        assert isinstance(last, Death) and last.bd_seq == 2 and last.ts is not None
        # The next run continues the sequence from what was persisted.
        async with running_agent(cfg):
            await wait_until(lambda: len(states()) == 5, what="birth 3")
            assert isinstance(states()[-1], Birth) and states()[-1].bd_seq == 3
    # Retained: a late subscriber sees the current state.
    async with watch(uplink_broker, cfg.store_id) as late:
        await wait_until(lambda: bool(late.on(state)), what="retained state")
        retained = json.loads(late.on(state)[-1])
        assert retained == {"v": 1, "online": False, "bd_seq": 3, "ts": retained["ts"]}
        assert started_ms <= retained["ts"] <= time.time() * 1000  # stamped at the clean stop


async def test_an_in_flight_window_across_a_cut_connection_loses_nothing(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker, publish_window=50)
    sent = [device_event("sale", n=i) for i in range(600)]
    topic = topics.evt(cfg.store_id, "sale")
    async with watch(uplink_broker, cfg.store_id) as seen, running_agent(cfg) as agent:
        async with device(local_broker, "pos", "pos-3") as pos:
            await publish_events(pos, "pos", "pos-3", sent[:300])
            _cut_uplink(agent)
            await publish_events(pos, "pos", "pos-3", sent[300:])
        await wait_until(
            lambda: {json.loads(p)["id"] for p in seen.on(topic)} == {e.id for e in sent},
            within_s=20,
            what="every event",
        )
        await wait_until(lambda: agent.outbox.depth() == 0, what="drained")
    seqs = [json.loads(p)["seq"] for p in seen.on(topic)]
    first: dict[int, int] = {}
    for s in seqs:
        first.setdefault(s, len(first))
    assert sorted(first, key=first.__getitem__) == sorted(first)  # first deliveries in order
