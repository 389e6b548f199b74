"""A device event the edge accepts is one the cloud stores (issue 12 item 3).

Whole path on real services: device -> local Mosquitto -> agent -> cloud Mosquitto ->
ingest -> SQLite / PostgreSQL. The largest device event the edge takes
(``DEVICE_EVENT_MAX``) is stored; one byte more, and the issue's 262,100-byte event, are
refused at the edge and counted, never acknowledged and then dropped by ingest; the
events after them still arrive.
"""

from __future__ import annotations

import asyncio
import time

import aiomqtt
import pytest

from protocols import encode, topics
from protocols.codec import DEVICE_EVENT_MAX
from protocols.ids import uuid7
from protocols.messages import DeviceEvent
from tests.integration.conftest import Stack, wait_for
from tests.integration.test_bad_input import _samples

pytestmark = pytest.mark.mosquitto

DEVICE = "d" * 64  # the widest device id: the widest envelope the topic can ask for


def event_of(size: int) -> DeviceEvent:
    """A sale whose encoding, as the device publishes it, is exactly ``size`` bytes."""
    event_id, ts = uuid7(), int(time.time() * 1000)
    empty = len(encode(DeviceEvent(id=event_id, kind="sale", ts=ts, data={"pad": ""})))
    event = DeviceEvent(id=event_id, kind="sale", ts=ts, data={"pad": "x" * (size - empty)})
    assert len(encode(event)) == size
    return event


async def test_near_cap_event_is_stored_and_one_byte_more_is_refused_at_the_edge(
    stack: Stack,
) -> None:
    stack.api(ingest=True).start()  # ingest inside the API: its /metrics shows rejections
    agent = stack.agent().start()
    await wait_for(
        lambda: bool((stack.store_row() or {}).get("online")), timeout=40, what="store online"
    )
    largest = event_of(DEVICE_EVENT_MAX)
    refused = [event_of(DEVICE_EVENT_MAX + 1), event_of(262_100)]
    after = [event_of(200) for _ in range(5)]

    topic = topics.local("pos", DEVICE, "up", "evt")
    local = stack.local_broker
    async with aiomqtt.Client(local.host, local.port, identifier="dev-big") as dev:
        for event in [largest, *refused, *after]:
            await dev.publish(topic, encode(event), qos=1)

    wanted = {largest.id, *(e.id for e in after)}
    await wait_for(lambda: wanted <= set(stack.stored_ids()), timeout=30,
                   what="the largest accepted event and the ones after it stored")

    agent_metrics = f"http://127.0.0.1:{stack.agent_metrics_port}/metrics"
    bad = await asyncio.to_thread(_samples, agent_metrics, "storefleet_agent_bad_payloads_total")
    assert bad.get("too_large") == len(refused), bad
    ingest_metrics = f"http://127.0.0.1:{stack.api_port}/metrics"
    dropped = await asyncio.to_thread(_samples, ingest_metrics,
                                      "storefleet_ingest_rejected_total")
    assert dropped.get("too_large", 0) == 0, dropped  # nothing reached ingest to be dropped
    stored = set(stack.stored_ids())
    assert not stored & {e.id for e in refused}
    assert agent.alive, agent.tail()
