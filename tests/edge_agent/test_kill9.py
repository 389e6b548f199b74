"""``kill -9`` the agent process mid-stream: every produced event still reaches the cloud."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from protocols import topics
from protocols.codec import encode
from tests.edge_agent.helpers import device_event, new_store_id, wait_until, watch
from tests.services import Mosquitto

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
N_EVENTS = 2000


@contextlib.contextmanager
def agent_process(
    *, store_id: str, cloud: Mosquitto, local: Mosquitto, data_dir: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    # No cloud ingest in this test: the uplink broker's PUBACK is the end of the line,
    # so the agent must not wait for the cloud to answer its birth.
    conf = data_dir.parent / "agent-no-cloud.toml"
    conf.write_text("[agent]\nawait_cloud_ready = false\n")
    cmd = [
        sys.executable, "-m", "edge_agent", "run",
        "--config", str(conf),
        "--store", store_id,
        "--cloud", cloud.url,
        "--local-bus", local.url,
        "--data-dir", str(data_dir),
        "--metrics-port", "0",
        "--log-level", "WARNING",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


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

    async with watch(uplink_broker, store_id) as seen:

        def seen_ids() -> set[str]:
            return {json.loads(p)["id"] for p in seen.on(topic)}

        async with aiomqtt.Client(local_broker.host, local_broker.port) as pos:

            async def produce(batch: list, pause_s: float) -> None:
                for i, ev in enumerate(batch):
                    await pos.publish(local_topic, encode(ev), qos=1)
                    if i % 20 == 19:
                        await asyncio.sleep(pause_s)  # a steady stream, not one burst

            with agent_process(
                store_id=store_id, cloud=uplink_broker, local=local_broker,
                data_dir=data_dir, log=log,
            ) as first:  # fmt: skip
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
            with agent_process(
                store_id=store_id, cloud=uplink_broker, local=local_broker,
                data_dir=data_dir, log=log,
            ) as second:  # fmt: skip
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
