"""The real store agent and the real cloud ingest on a three-node RabbitMQ cluster
(decisions 0053, 0062): both hold the cluster's address, ``mqtt://n1,n2,n3``; events
stream from the store's devices; the node both are connected to is killed (``kill -9``)
mid-stream. Each moves to a survivor on its next connect, and every event the devices
produced is stored exactly once in the cloud database and acknowledged back to the
store (its outbox empty).

The processes are production's: ``storefleet edge run`` (uplink, SQLite outbox, cloud
acks) and ``storefleet cloud ingest --no-share`` (one worker: RabbitMQ has no ``$share``,
decision 0053) on SQLite. The node they start on is where their seeded host order begins
(``BrokerAddress.rotation(seed=client id)``): the test picks an ingest client id whose
order starts where the store's does, and checks with the cluster that both are there
before the kill.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from cloud.settings import CloudSettings
from firmware_sim.store import StoreSimulator
from protocols.broker import BrokerAddress
from tests.cluster_services import PASSWORD, USER, RabbitCluster
from tests.integration.conftest import wait_for
from tests.integration.harness import Proc
from tests.services import Mosquitto, free_port

logger = logging.getLogger(__name__)

pytestmark = [
    pytest.mark.rabbitmq,
    # One cluster per module, on the xdist worker that runs test_broker_cluster.py too.
    pytest.mark.xdist_group("rabbitmq-cluster"),
]

STORE = "S001"
EVENTS = 2000  # at RATE, ~10 s of stream: the kill lands well inside it
RATE = 200  # events/s from the store's devices
KILL_AFTER = 500  # events stored in the cloud when the node dies
SAMPLE_S = 0.1  # the figures' resolution


def cluster_url(cluster: RabbitCluster) -> str:
    hosts = ",".join(f"127.0.0.1:{n.mqtt_port}" for n in cluster.nodes)
    return f"mqtt://{USER}:{PASSWORD}@{hosts}"


def first_port(url: str, client_id: str) -> int:
    return next(BrokerAddress.parse(url, setting="test").rotation(seed=client_id)).port


def connected_ports(cluster: RabbitCluster) -> dict[str, int]:
    """``{client id: the MQTT port of the node it is connected to}``, cluster-wide."""
    rows = json.loads(cluster.ctl("list_mqtt_connections", "client_id", "conn_name",
                                  "--formatter", "json"))
    # conn_name: "127.0.0.1:54321 -> 127.0.0.1:<node's MQTT port>"
    return {r["client_id"]: int(r["conn_name"].rsplit(":", 1)[1]) for r in rows}


def stored_ids(engine: sa.Engine) -> list[str]:
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text("SELECT id FROM events"))]
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # not migrated yet
        return []


def metric(url: str, name: str) -> float | None:
    """The sum of a metric's samples (all labels) scraped from ``url``; None: no answer."""
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return None
    values = [sample.value for family in text_string_to_metric_families(text)
              for sample in family.samples if sample.name == name]
    return sum(values) if values else None


@dataclass
class Timeline:
    """What the test saw, sampled every ``SAMPLE_S``: (loop time, events stored, the
    agent's uplink connects)."""

    samples: list[tuple[float, int, float]] = field(default_factory=list)

    async def run(self, engine: sa.Engine, metrics_url: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            stored = await asyncio.to_thread(stored_ids, engine)
            connects = await asyncio.to_thread(metric, metrics_url,
                                               "storefleet_uplink_connects_total")
            self.samples.append((loop.time(), len(stored), connects or 0.0))
            await asyncio.sleep(SAMPLE_S)

    def longest_stall_after(self, t: float) -> float:
        """The longest time after ``t`` in which no new event was stored."""
        stall, last_t, last_n = 0.0, t, -1
        for when, stored, _ in self.samples:
            if when < t:
                last_n = stored
                continue
            if stored != last_n:
                stall, last_t, last_n = max(stall, when - last_t), when, stored
        return stall

    def rate(self, start: float, end: float) -> float:
        """Events stored per second between two times."""
        inside = [(when, n) for when, n, _ in self.samples if start <= when <= end]
        if len(inside) < 2 or inside[-1][0] == inside[0][0]:
            return 0.0
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    def first_reconnect_after(self, t: float) -> float | None:
        before = max((c for when, _, c in self.samples if when <= t), default=0.0)
        return next((when - t for when, _, c in self.samples if when > t and c > before),
                    None)


def test_the_cloud_settings_take_the_cluster_address() -> None:
    settings = CloudSettings(mqtt_url="mqtt://n1:1883,n2:1883,n3:1883",
                             mqtt_username="ingest", mqtt_password="pw")
    assert settings.mqtt.hosts == (("n1", 1883), ("n2", 1883), ("n3", 1883))
    assert [a.username for a in settings.mqtt.each_host()] == ["ingest"] * 3
    with pytest.raises(ValueError, match=r"mqtt_url.*lists n1:1883 twice"):
        CloudSettings(mqtt_url="mqtt://n1:1883,n2,n1")


async def test_agent_and_ingest_fail_over_with_nothing_lost(
    cluster: RabbitCluster, tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]
) -> None:
    url = cluster_url(cluster)
    # An ingest client id whose host order starts on the store's first node.
    target = first_port(url, STORE)
    ingest_id = next(f"ingest-cluster-{i}" for i in range(100)
                     if first_port(url, f"ingest-cluster-{i}") == target)
    doomed = next(n for n in cluster.nodes if n.mqtt_port == target)
    local = mosquitto_factory()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    metrics_url = f"http://127.0.0.1:{(metrics_port := free_port())}/metrics"
    conf = tmp_path / "agent.toml"
    conf.write_text("[agent]\nkeepalive_s = 10\nreconnect_max_s = 2.0\n")
    logs = tmp_path / "logs"
    ingest = Proc("ingest", ["cloud", "ingest", "--db", str(engine.url), "--mqtt", url,
                             "--client-id", ingest_id, "--no-share", "--metrics-port", "0"],
                  logdir=logs)
    agent = Proc("agent", ["edge", "run", "--store", STORE, "--cloud", url,
                           "--local-bus", local.url, "--data-dir", str(tmp_path / "edge"),
                           "--metrics-port", str(metrics_port), "--config", str(conf)],
                 logdir=logs)
    sim = StoreSimulator(bus_url=local.url, store_id=STORE, devices=4, rate=RATE,
                         max_events=EVENTS, tele_interval_s=0.5, ledger=tmp_path / "ledger")
    sampler: asyncio.Task[None] | None = None
    try:
        ingest.start()
        agent.start()
        await wait_for(lambda: metric(metrics_url, "storefleet_uplink_cloud_ready") == 1,
                       timeout=60, what="the agent's birth answered by ingest")
        where = await asyncio.to_thread(connected_ports, cluster)
        assert where.get(STORE) == target and where.get(ingest_id) == target, (where, target)

        timeline = Timeline()
        sampler = asyncio.create_task(timeline.run(engine, metrics_url), name="sampler")
        run = asyncio.create_task(sim.run(asyncio.Event()), name="store-devices")
        started_at = asyncio.get_running_loop().time()
        await wait_for(lambda: len(stored_ids(engine)) >= KILL_AFTER, timeout=60,
                       what=f"{KILL_AFTER} events stored")
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        await asyncio.to_thread(cluster.kill, doomed.index)
        stored_at_kill, produced_at_kill = len(stored_ids(engine)), sim.produced

        await asyncio.wait_for(run, timeout=120)
        produced_at = loop.time()
        assert stored_at_kill < EVENTS, "the kill must land mid-stream"
        produced = list(sim.produced_ids)
        await wait_for(lambda: set(produced) <= set(stored_ids(engine)), timeout=120,
                       what="every produced event stored")
        stored_at = loop.time()
        await wait_for(lambda: metric(metrics_url, "storefleet_outbox_depth") == 0,
                       timeout=60, what="the store's outbox empty (every event acknowledged)")
        empty_at = loop.time()
        await asyncio.sleep(2.0)  # any late redelivery arrives before duplicates are counted
        stored = await asyncio.to_thread(stored_ids, engine)
        where_after = await asyncio.to_thread(connected_ports, cluster)
        resent = metric(metrics_url, "storefleet_uplink_resent_total") or 0.0
        logger.warning(
            "cluster failover with the real agent and ingest: %d events at %d/s, node %s "
            "killed at %d stored (%d produced; stored at %.0f/s before the kill, %.0f/s "
            "after it); the store's next session %.2f s after the kill; "
            "longest time with nothing stored %.2f s; devices done %.1f s after the kill, "
            "everything stored %.1f s after that, outbox empty %.1f s after that; store "
            "now on port %s, ingest on %s (killed: %s); %d re-sent by the store", EVENTS,
            RATE, doomed.name, stored_at_kill, produced_at_kill,
            timeline.rate(started_at, killed_at), timeline.rate(killed_at, stored_at),
            timeline.first_reconnect_after(killed_at) or -1,
            timeline.longest_stall_after(killed_at), produced_at - killed_at,
            stored_at - produced_at, empty_at - stored_at, where_after.get(STORE),
            where_after.get(ingest_id), target, resent)
    except BaseException:
        logger.error("agent log:\n%s\ningest log:\n%s", agent.tail(), ingest.tail())
        raise
    finally:
        if sampler is not None:
            sampler.cancel()
        for proc in (agent, ingest):
            proc.terminate(timeout=10)
        engine.dispose()

    assert len(produced) == EVENTS and len(set(produced)) == EVENTS
    twice = [i for i, n in Counter(stored).items() if n > 1]
    assert not set(produced) - set(stored), "events lost"
    assert not set(stored) - set(produced), "events the devices never produced"
    assert not twice, f"{len(twice)} events stored twice"
    # Both moved to survivors (and stayed in the cluster's sessions: nothing was lost).
    assert where_after.get(STORE) not in (None, target), where_after
    assert where_after.get(ingest_id) not in (None, target), where_after
