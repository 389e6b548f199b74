"""The cloud broker as a three-node RabbitMQ cluster (decision 0053), on loopback.

``test_node_loss_mid_stream_loses_nothing``: a store publishes QoS 1 events with an
outbox (a window in flight; whatever has no PUBACK is sent again after a reconnect) and
ingest holds a persistent QoS 1 session, both on node 1. ``kill -9`` of node 1 mid-stream:
both reconnect to the surviving nodes and every event arrives (duplicates allowed; the
cloud stores once by event id). A third client's Last Will dies with node 1.

``test_what_the_cluster_does_not_do``: pins the limits storefleet has to design around
with RabbitMQ 3.10 (Debian 12): ``$share`` is granted and delivers nothing, and a
retained message is kept only by the node it was published to, for exact-topic
subscribers. A RabbitMQ that changes either fails this test, and the decision is
revisited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiomqtt
import pytest

from tests.cluster_services import PASSWORD, USER, RabbitCluster, RabbitNode

logger = logging.getLogger(__name__)

pytestmark = [
    pytest.mark.rabbitmq,
    # One cluster per module: both tests on one xdist worker.
    pytest.mark.xdist_group("rabbitmq-cluster"),
]

EVENTS = 1500  # ~5-10 s of stream on this machine: the kill lands well inside it
KILL_AFTER = 500  # events ingest has received when node 1 dies
WINDOW = 20  # the store's publishes in flight (aiomqtt's default inflight window)
PUBLISH_TIMEOUT_S = 5.0  # a publish to a dead node is abandoned after this
INGEST_ID = "ingest-cluster-1"
WILL_WAIT_S = 8.0  # after the kill: more than 1.5 x the Will client's 5 s keepalive


def client(node: RabbitNode, identifier: str, **kwargs: object) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", node.mqtt_port, identifier=identifier, username=USER,
                          password=PASSWORD, timeout=PUBLISH_TIMEOUT_S, **kwargs)  # type: ignore[arg-type]


async def drain(c: aiomqtt.Client, wait_s: float = 1.5) -> list[tuple[str, bytes]]:
    """What arrives within ``wait_s``."""
    got: list[tuple[str, bytes]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait_s):
            async for m in c.messages:
                assert isinstance(m.payload, bytes)
                got.append((str(m.topic), m.payload))
    return got


@contextlib.asynccontextmanager
async def until_lost(c: aiomqtt.Client) -> AsyncIterator[aiomqtt.Client]:
    """A connection whose node may die under it: leaving it does not raise."""
    try:
        async with c:
            yield c
    except aiomqtt.MqttError:
        pass


@dataclass
class Tally:
    received: set[int] = field(default_factory=set)
    duplicates: int = 0
    nodes: list[int] = field(default_factory=list)  # each node a client connected to
    failover_s: float | None = None  # from the kill to the first event through a survivor
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    kill_point: asyncio.Event = field(default_factory=asyncio.Event)  # KILL_AFTER received


async def ingest(order: list[RabbitNode], tally: Tally, done: asyncio.Event,
                 killed_at: list[float]) -> None:
    """A persistent session (clean_session=False) that subscribes once, on its first
    node; after a loss it reconnects to the next node and does not subscribe again: the
    session, queue and binding included, is the cluster's."""
    subscribed = False
    i = 0
    while not done.is_set():
        node = order[i % len(order)]
        try:
            async with client(node, INGEST_ID, clean_session=False) as c:
                tally.nodes.append(node.index)
                if not subscribed:
                    await c.subscribe("sf/v1/+/evt/#", qos=1)
                    subscribed = True
                    tally.subscribed.set()
                async for message in c.messages:
                    assert isinstance(message.payload, bytes)
                    seq = json.loads(message.payload)["seq"]
                    if seq in tally.received:
                        tally.duplicates += 1
                    tally.received.add(seq)
                    if len(tally.received) == KILL_AFTER:
                        tally.kill_point.set()
                    if i > 0 and killed_at and tally.failover_s is None:
                        tally.failover_s = time.monotonic() - killed_at[0]
                    if len(tally.received) == EVENTS:
                        done.set()
                        return
        except aiomqtt.MqttError as err:
            logger.info("ingest lost node %s: %s", node.index, err)
            i += 1
            await asyncio.sleep(0.2)


async def store(order: list[RabbitNode], tally: Tally, killed_at: list[float]) -> None:
    """The agent's outbox in small: an event leaves ``outbox`` only on its PUBACK; after a
    loss everything still in it is published again on the next node."""
    outbox = list(range(EVENTS))
    i = 0
    while outbox:
        node = order[i % len(order)]
        try:
            async with client(node, "S001", clean_session=False) as c:
                tally.nodes.append(node.index)
                while outbox:
                    batch = outbox[:WINDOW]
                    results = await asyncio.gather(
                        *(asyncio.wait_for(c.publish("sf/v1/S001/evt/sale",
                                                     json.dumps({"seq": seq}), qos=1),
                                           PUBLISH_TIMEOUT_S) for seq in batch),
                        return_exceptions=True)
                    acked = {seq for seq, r in zip(batch, results, strict=True) if r is None}
                    if i > 0 and acked and killed_at and tally.failover_s is None:
                        tally.failover_s = time.monotonic() - killed_at[0]
                    outbox = [seq for seq in outbox if seq not in acked]
                    failed = next((r for r in results if r is not None), None)
                    if failed is not None:
                        raise aiomqtt.MqttError(f"publish failed: {failed!r}")
        except aiomqtt.MqttError as err:
            logger.info("store lost node %s with %d unacked: %s", node.index, len(outbox), err)
            i += 1
            await asyncio.sleep(0.2)


async def test_node_loss_mid_stream_loses_nothing(cluster: RabbitCluster) -> None:
    n1, n2, n3 = cluster.nodes
    sent, got = Tally(), Tally()
    done = asyncio.Event()
    killed_at: list[float] = []
    ingest_task = asyncio.create_task(ingest([n1, n3, n2], got, done, killed_at),
                                      name="ingest")
    await asyncio.wait_for(got.subscribed.wait(), 30)
    queue = f"mqtt-subscription-{INGEST_ID}qos1"
    before = await asyncio.to_thread(cluster.queue_members, queue)
    assert before["type"] == "quorum" and len(before["members"]) == 3, before  # type: ignore[arg-type]
    # Clients connect only while a majority of the client-id tracker is up.
    assert await asyncio.to_thread(cluster.tracker_members) == sorted(n.name for n in cluster.nodes)

    async def kill_node_1() -> None:
        await got.kill_point.wait()
        killed_at.append(time.monotonic())
        await asyncio.to_thread(cluster.kill, 1)  # blocking wait for the process

    async with contextlib.AsyncExitStack() as stack:
        # A third store on node 1 with a Last Will, watched from node 3.
        watcher = await stack.enter_async_context(client(n3, "will-watch"))
        await watcher.subscribe("sf/v1/S003/state", qos=1)
        await stack.enter_async_context(until_lost(client(
            n1, "S003", keepalive=5, will=aiomqtt.Will("sf/v1/S003/state", b"death", qos=1))))

        started = time.monotonic()
        killer = asyncio.create_task(kill_node_1(), name="kill-node-1")
        await store([n1, n2, n3], sent, killed_at)
        try:
            await asyncio.wait_for(done.wait(), 60)
        finally:
            ingest_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ingest_task
            await killer
        elapsed = time.monotonic() - started
        # Past 1.5 keepalives after the kill: a live broker would have sent the Will.
        wills = await drain(watcher, max(0.5, killed_at[0] + WILL_WAIT_S - time.monotonic()))

    missing = sorted(set(range(EVENTS)) - got.received)
    after = await asyncio.to_thread(cluster.queue_members, queue)
    logger.warning("cluster failover: %d events in %.1f s, %d duplicates; store nodes %s, "
                   "first PUBACK from a survivor %.2f s after the kill; ingest nodes %s, "
                   "first event through a survivor after %.2f s; queue leader %s -> %s",
                   EVENTS, elapsed, got.duplicates, sent.nodes, sent.failover_s or -1,
                   got.nodes, got.failover_s or -1, before["leader"], after["leader"])
    assert not missing, f"lost {len(missing)} events: {missing[:20]}"
    assert killed_at, "node 1 was never killed: the stream ended first"
    # Both really failed over, each to a survivor, and node 1 took the queue's leader with it.
    assert sent.nodes[0] == 1 and got.nodes[0] == 1
    assert len(sent.nodes) >= 2 and 1 not in sent.nodes[1:], sent.nodes
    assert len(got.nodes) >= 2 and 1 not in got.nodes[1:], got.nodes
    assert before["leader"] == n1.name and after["leader"] != n1.name, (before, after)
    # Redeliveries are bounded by what was in flight at the kill (window and prefetch).
    assert got.duplicates <= 2 * WINDOW + 10, got.duplicates
    # The Will lived in node 1's connection process and died with it (decision 0053):
    # a store's death is known from its next birth or from the cloud's own timeout.
    assert wills == [], "RabbitMQ now sends a dead node's Wills: see decision 0053"

    # The killed node comes back with its data and rejoins; the next test has three nodes.
    await asyncio.to_thread(cluster.start_node, 1)
    deadline = time.monotonic() + 60
    while len(await asyncio.to_thread(cluster.running_nodes)) < 3:
        assert time.monotonic() < deadline, "node 1 did not rejoin the cluster"
        await asyncio.sleep(1)


async def test_what_the_cluster_does_not_do(cluster: RabbitCluster) -> None:
    n2, n3 = cluster.node(2), cluster.node(3)

    # $share: SUBACK grants QoS 1, then nothing arrives; a plain subscriber gets all.
    async with client(n2, "share-w1") as w1, client(n3, "share-w2") as w2, \
            client(n2, "plain") as plain:
        for worker in (w1, w2):
            await worker.subscribe("$share/ingest/sf/v1/+/evt/#", qos=1)
        await plain.subscribe("sf/v1/+/evt/#", qos=1)
        async with client(n2, "S002") as pub:
            for seq in range(10):
                await pub.publish("sf/v1/S002/evt/sale", str(seq), qos=1)
        shared_1, shared_2, everything = await asyncio.gather(drain(w1), drain(w2),
                                                              drain(plain))
    assert len(everything) == 10
    assert shared_1 == [] and shared_2 == [], "RabbitMQ now delivers $share: see decision 0053"

    # Retained: kept by the node it was published to, for exact-topic subscribers only.
    async with client(n2, "S002") as pub:
        await pub.publish("sf/v1/S002/state", b"birth", qos=1, retain=True)
    seen: dict[str, list[tuple[str, bytes]]] = {}
    for label, node, topic in (("same node, exact", n2, "sf/v1/S002/state"),
                               ("same node, wildcard", n2, "sf/v1/+/state"),
                               ("other node, exact", n3, "sf/v1/S002/state")):
        async with client(node, f"ret-{node.index}") as sub:
            await sub.subscribe(topic, qos=1)
            seen[label] = await drain(sub, 1.0)
    assert seen == {"same node, exact": [("sf/v1/S002/state", b"birth")],
                    "same node, wildcard": [],
                    "other node, exact": []}, "RabbitMQ's retained store changed: see 0053"
