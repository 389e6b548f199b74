"""Ingest acknowledges each store's events to that store, only after they are committed
(``topics.ack``, decision 0028): the store deletes them from its outbox only then."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import aiomqtt
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from cloud.db import make_engine
from cloud.db.models import Event
from protocols import decode, topics
from protocols.messages import EventsAck
from tests.cloud.conftest import make_settings, make_worker, metric, publish, running, wait_until
from tests.cloud.ingest.test_worker import FailingProcessor, evt
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


def stored_ids(db_url: str) -> set[str]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(Event.id)).scalars())
    finally:
        engine.dispose()


async def test_each_store_is_acked_its_events_after_commit(
    mosquitto: Mosquitto, db_url: str
) -> None:
    registry = CollectorRegistry()
    worker = make_worker(make_settings(db_url, mosquitto.url), registry)
    # The first two batches fail like a dead database: nothing may be acknowledged then.
    worker._processor = FailingProcessor(worker._processor, failures=2)  # type: ignore[assignment]
    acked: dict[str, list[str]] = defaultdict(list)
    not_yet_stored: list[str] = []

    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="stores") as stores:
        await stores.subscribe(f"{topics.PREFIX}/+/ack", qos=1)

        async def listen() -> None:
            async for msg in stores.messages:
                store = topics.parse_uplink(str(msg.topic)).store_id
                assert isinstance(msg.payload, bytes)
                ids = decode(msg.payload, EventsAck).ids
                acked[store] += ids
                committed = await asyncio.to_thread(stored_ids, db_url)
                not_yet_stored.extend(i for i in ids if i not in committed)

        listener = asyncio.create_task(listen())
        async with running(worker):
            sent = [evt(i, "s1") for i in range(30)] + [evt(i, "s2") for i in range(5)]
            await publish(mosquitto.url, sent)
            await publish(mosquitto.url, [evt(i, "s1") for i in range(3)])  # re-sent copies
            await wait_until(lambda: len(acked["s1"]) >= 33 and len(acked["s2"]) >= 5)
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)

    assert not not_yet_stored, "acknowledged before the commit"
    assert set(acked["s1"]) == {f"s1-e{i:05d}" for i in range(30)}
    assert set(acked["s2"]) == {f"s2-e{i:05d}" for i in range(5)}
    assert sorted(acked) == ["s1", "s2"]  # a store hears only of its own events
    # A copy is acknowledged again (the store may have missed the first ack).
    assert acked["s1"].count("s1-e00000") == 2
    assert metric(registry, "storefleet_ingest_events_acked_total") == len(acked["s1"]) + 5
