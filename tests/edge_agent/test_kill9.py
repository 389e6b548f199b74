"""``kill -9`` the agent process mid-stream: every produced event still reaches the cloud."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
from pathlib import Path

import aiomqtt
import pytest

from protocols import topics
from protocols.codec import encode
from tests.edge_agent.helpers import (
    agent_process,
    device_event,
    new_store_id,
    wait_until,
    watch,
)
from tests.services import Mosquitto

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

N_EVENTS = 2000


async def test_kill9_mid_stream_loses_no_event(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    store_id = new_store_id()
    data_dir = tmp_path / "agent"
    log = tmp_path / "agent.log"
    events = [device_event("sale", n=i) for i in range(N_EVENTS)]
    produced = {e.id for e in events}
    topic = topics.evt(store_id, "sale")
    local_topic = topics.local("pos", "pos-1", "up", "evt")
    # No cloud ingest in this test: the uplink broker's PUBACK is the end of the line,
    # so the agent must not wait for the cloud to answer its birth.
    conf = tmp_path / "agent-no-cloud.toml"
    conf.write_text("[agent]\nawait_cloud_ready = false\n")
    run_agent = functools.partial(agent_process, store_id=store_id, conf=conf,
                                  cloud_url=uplink_broker.url, local_url=local_broker.url,
                                  data_dir=data_dir, log=log)

    async with watch(uplink_broker, store_id) as seen:

        def seen_ids() -> set[str]:
            return {json.loads(p)["id"] for p in seen.on(topic)}

        async with aiomqtt.Client(local_broker.host, local_broker.port) as pos:

            async def produce(batch: list, pause_s: float) -> None:
                for i, ev in enumerate(batch):
                    await pos.publish(local_topic, encode(ev), qos=1)
                    if i % 20 == 19:
                        await asyncio.sleep(pause_s)  # a steady stream, not one burst

            with run_agent() as first:
                # Probes (another kind) until one arrives: then the agent's persistent local
                # session exists, and the broker keeps everything for it from here on.
                probe_topic = topics.evt(store_id, "member_visit")
                for _ in range(100):
                    probe = encode(device_event("member_visit"))
                    await pos.publish(local_topic, probe, qos=1)
                    with contextlib.suppress(AssertionError):
                        await wait_until(lambda: bool(seen.on(probe_topic)), within_s=0.2)
                        break
                producer = asyncio.create_task(produce(events, 0.005), name="test-producer")
                await wait_until(lambda: len(seen_ids()) >= 600, within_s=30, what="600 events")
                first.send_signal(signal.SIGKILL)
                first.wait(5)
                killed_at = len(seen_ids())
                await producer  # the rest queues at the local broker for the agent's session
            assert killed_at < N_EVENTS, "the kill was not mid-stream"
            with run_agent() as second:
                await wait_until(lambda: seen_ids() == produced, within_s=60, what="all events")
                assert second.poll() is None

    payloads = [json.loads(p) for p in seen.on(topic)]
    assert seen_ids() == produced  # every id at least once, nothing else
    duplicates = len(payloads) - len(produced)
    assert duplicates < 500, f"{duplicates} duplicates"  # bounded by the in-flight window
    # seq: first deliveries are in increasing order; re-sent ones are flagged historical.
    firsts: dict[str, int] = {}
    for p in payloads:
        firsts.setdefault(p["id"], p["seq"])
    seqs = list(firsts.values())
    assert seqs == sorted(seqs)
    assert any(p["historical"] for p in payloads)
    print(f"killed after {killed_at} events; {duplicates} duplicates delivered")
