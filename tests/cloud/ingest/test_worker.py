"""IngestWorker against a real Mosquitto broker and real databases.

"Nothing lost" is tested by breaking things between receipt and commit: a database
that fails, a worker cancelled mid-stream, a broker restarted. Each time every event
must end up stored exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Row, func, select

from cloud.db import make_engine, upgrade
from cloud.db.models import Event, Store
from cloud.errors import DatabaseUnavailable
from cloud.ingest.batch import BatchProcessor, BatchResult
from protocols import encode, topics
from protocols.messages import Birth
from protocols.messages import Event as EventMsg
from tests.cloud.conftest import make_settings, make_worker, metric, publish, running, wait_until
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


def evt(i: int, store: str = "s1") -> tuple[str, bytes]:
    msg = EventMsg(id=f"{store}-e{i:05d}", kind="sale", store_id=store, seq=i, ts=1000 + i)
    return topics.evt(store, "sale"), encode(msg)


def stored(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Event)).scalar_one())
    finally:
        engine.dispose()


class FailingProcessor:
    """Wraps the real processor: fails the first ``failures`` batches like a dead database."""

    def __init__(self, inner: BatchProcessor, *, failures: int, delay_s: float = 0.0) -> None:
        self.inner, self.failures, self.delay_s, self.calls = inner, failures, delay_s, 0

    def process(self, raw: list[tuple[str, bytes]]) -> BatchResult:
        self.calls += 1
        time.sleep(self.delay_s)
        if self.calls <= self.failures:
            raise DatabaseUnavailable("simulated outage")
        return self.inner.process(raw)


async def test_events_stored_once_and_metrics(mosquitto: Mosquitto, db_url: str) -> None:
    registry = CollectorRegistry()
    worker = make_worker(make_settings(db_url, mosquitto.url), registry)
    async with running(worker):
        await publish(mosquitto.url, [evt(i % 50) for i in range(100)])
        await wait_until(lambda: metric(registry, "storefleet_ingest_messages_total",
                                        channel="evt") >= 100)
    assert stored(db_url) == 50
    assert metric(registry, "storefleet_ingest_events_stored_total") == 50
    assert metric(registry, "storefleet_ingest_duplicates_total") == 50
    assert metric(registry, "storefleet_ingest_connected") == 0  # stopped


BAD_MESSAGES: list[tuple[str, bytes, str]] = [
    (topics.evt("s1", "sale"), b"not json at all", "not_json"),
    (topics.evt("s1", "sale"), b'{"id":"x"}', "missing_field"),
    (topics.evt("s1", "sale"), b'{"v":1,"id":"x","kind":"sale","store_id":"s1","seq":"1",'
     b'"ts":1}', "invalid_field"),
    (topics.evt("s1", "sale"), b'{"v":1,"id":"x","kind":"sale","store_id":"s1","seq":1,"ts":1,'
     b'"data":{"pad":"' + b"x" * 3000 + b'"}}', "too_large"),
    (topics.evt("s1", "zap"), b'{"v":1,"id":"x","kind":"zap","store_id":"s1","seq":1,"ts":1}',
     "unknown_kind"),
    (topics.evt("s1", "refund"), evt(1)[1], "topic_mismatch"),
    (topics.evt("s9", "sale"), evt(1)[1], "topic_mismatch"),
    (topics.state("s1"), b'{"online":"maybe"}', "invalid_field"),
    (topics.cmd_res("s1"), b'{"v":1,"cmd_id":"nope","status":"ok","ts":1}', "unknown_cmd_id"),
]


async def test_malformed_messages_rejected_counted_and_stream_continues(
    mosquitto: Mosquitto, db_url: str
) -> None:
    registry = CollectorRegistry()
    settings = make_settings(db_url, mosquitto.url, max_payload=2048)
    worker = make_worker(settings, registry)
    birth = Birth(bd_seq=1, ts=1, agent_version="1.0")
    async with running(worker):
        await publish(mosquitto.url, [(topics.state("s1"), encode(birth)), evt(1)])
        await wait_until(lambda: stored(db_url) == 1)
        # The store's view right before the garbage.
        engine = make_engine(db_url)
        with engine.connect() as conn:
            before = conn.execute(select(Store.__table__)).all()
        for topic, payload, _ in BAD_MESSAGES:  # one at a time: each its own batch too
            await publish(mosquitto.url, [(topic, payload)])
        await publish(mosquitto.url, [evt(2)])  # a good message after all the bad ones
        await wait_until(lambda: stored(db_url) == 2)
    for _, _, reason in BAD_MESSAGES:
        assert metric(registry, "storefleet_ingest_rejected_total", reason=reason) >= 1, reason
    total = sum(metric(registry, "storefleet_ingest_rejected_total", reason=r)
                for r in {r for _, _, r in BAD_MESSAGES})
    assert total == len(BAD_MESSAGES)
    with engine.connect() as conn:
        after = conn.execute(select(Store.__table__)).all()
        ids = set(conn.execute(select(Event.id)).scalars())
    engine.dispose()
    assert ids == {"s1-e00001", "s1-e00002"}
    # Stored data is untouched by the garbage (last_seen moves with the good event only).
    def view(rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r._mapping.items() if k != "last_seen_ms"} for r in rows]

    assert view(after) == view(before)
    # Poison messages were acknowledged: a new worker with the same session gets nothing.
    registry2 = CollectorRegistry()
    async with running(make_worker(settings, registry2)):
        await asyncio.sleep(0.5)
    assert metric(registry2, "storefleet_ingest_rejected_total", reason="not_json") == 0


async def test_database_failure_is_not_acknowledged(mosquitto: Mosquitto, db_url: str) -> None:
    registry = CollectorRegistry()
    worker = make_worker(make_settings(db_url, mosquitto.url), registry)
    flaky = FailingProcessor(worker._processor, failures=3)
    worker._processor = flaky  # type: ignore[assignment]
    async with running(worker):
        await publish(mosquitto.url, [evt(i) for i in range(20)])
        await wait_until(lambda: stored(db_url) == 20)
    assert flaky.calls > 3
    assert metric(registry, "storefleet_ingest_db_errors_total") == 3
    # Redelivered after each failure, yet every event exactly once.
    assert metric(registry, "storefleet_ingest_events_stored_total") == 20


async def test_crash_mid_stream_then_restart_loses_nothing(
    mosquitto: Mosquitto, db_url: str
) -> None:
    settings = make_settings(db_url, mosquitto.url)
    n = 300
    first = make_worker(settings, batch_max=20)
    slow = FailingProcessor(first._processor, failures=0, delay_s=0.1)
    first._processor = slow  # type: ignore[assignment]
    async with running(first) as task:
        await publish(mosquitto.url, [evt(i) for i in range(n)])
        await wait_until(lambda: stored(db_url) >= 40)
        task.cancel()  # "crash": in-flight batch neither committed-and-acked nor finished
        with pytest.raises(asyncio.CancelledError):
            await task
    partial = stored(db_url)
    assert 0 < partial < n, "the crash must happen mid-stream for this test to mean anything"
    registry = CollectorRegistry()
    async with running(make_worker(settings, registry)):  # same client id: same session
        await wait_until(lambda: stored(db_url) == n, timeout=20)
        await asyncio.sleep(0.2)
    assert stored(db_url) == n


async def test_offline_worker_gets_queued_events_and_survives_broker_restart(
    mosquitto: Mosquitto, db_url: str
) -> None:
    settings = make_settings(db_url, mosquitto.url)
    async with running(make_worker(settings)) as task:
        await publish(mosquitto.url, [evt(0)])
        await wait_until(lambda: stored(db_url) == 1)
        task.cancel()  # a crash, not a clean stop (which would end the session)
        with pytest.raises(asyncio.CancelledError):
            await task
    # The worker is away: its persistent session queues what stores send meanwhile.
    await publish(mosquitto.url, [evt(i) for i in range(1, 101)])
    registry = CollectorRegistry()
    worker = make_worker(settings, registry)
    async with running(worker):
        await wait_until(lambda: stored(db_url) == 101)
        mosquitto.stop()  # graceful: Mosquitto saves its persistence file
        await wait_until(lambda: metric(registry, "storefleet_ingest_connected") == 0)
        mosquitto.start()
        await wait_until(lambda: metric(registry, "storefleet_ingest_connected") == 1,
                         timeout=20)
        await publish(mosquitto.url, [evt(i) for i in range(101, 151)])
        await wait_until(lambda: stored(db_url) == 151, timeout=20)
    assert metric(registry, "storefleet_ingest_connect_failures_total") >= 1


async def test_plain_subscription_without_share_group(mosquitto: Mosquitto, db_url: str) -> None:
    upgrade(db_url)
    settings = make_settings(db_url, mosquitto.url, share_group=None)
    async with running(make_worker(settings, migrate=False)):
        await publish(mosquitto.url, [evt(1)])
        await wait_until(lambda: stored(db_url) == 1)


# ---- a clean stop hands over (decision 0029) ------------------------------------------


async def test_clean_stop_drains_what_was_routed_to_it(mosquitto: Mosquitto, db_url: str) -> None:
    """Stopped with a backlog in its session, the worker stores and acknowledges all of
    it before it goes, instead of leaving it parked at the broker."""
    registry = CollectorRegistry()
    worker = make_worker(make_settings(db_url, mosquitto.url), registry, batch_max=20)
    # Slow commits: most of the 300 still wait in the session when the stop comes.
    worker._processor = FailingProcessor(  # type: ignore[assignment]
        worker._processor, failures=0, delay_s=0.05)
    async with running(worker) as task:
        await publish(mosquitto.url, [evt(i) for i in range(300)])
        await wait_until(lambda: stored(db_url) >= 20)
        stop_at = time.monotonic()
    assert task.done()
    assert stored(db_url) == 300, "everything routed to the stopping worker is stored"
    assert time.monotonic() - stop_at < 10
    drained = metric(registry, "storefleet_ingest_drained_total")
    assert 0 < drained <= 280
    assert metric(registry, "storefleet_ingest_stops_total", outcome="idle") == 1
    assert metric(registry, "storefleet_ingest_events_acked_total") == 300


async def test_clean_stop_parks_nothing_for_the_stopped_worker(
    mosquitto: Mosquitto, db_url: str
) -> None:
    """Two workers share the subscription; after one stops cleanly every new event goes
    to the other at once (a persistent session that kept its share would be handed half
    of them, parked until it returns)."""
    upgrade(db_url)
    leaving = make_worker(make_settings(db_url, mosquitto.url), migrate=False)
    staying = make_worker(make_settings(db_url, mosquitto.url), migrate=False)
    async with running(staying):
        async with running(leaving):
            await publish(mosquitto.url, [evt(i) for i in range(100)])
            await wait_until(lambda: stored(db_url) == 100)
        await publish(mosquitto.url, [evt(i) for i in range(100, 300)])
        await wait_until(lambda: stored(db_url) == 300, timeout=5)
    # The stopped worker's session is gone: its client id comes back to an empty one.
    registry = CollectorRegistry()
    back = make_worker(leaving.settings, registry, migrate=False)
    async with running(back):
        await asyncio.sleep(0.5)
    assert metric(registry, "storefleet_ingest_messages_total", channel="evt") == 0
