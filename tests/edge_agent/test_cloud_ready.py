"""The outbox drains only after the cloud answered this session's birth (``ready``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from protocols import encode, topics
from protocols.messages import CloudReady, DeviceEvent
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


async def test_events_wait_for_the_clouds_answer_to_the_birth(
    tmp_path: Path, mosquitto_factory: object
) -> None:
    uplink: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    local: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    config = make_config(tmp_path, uplink=uplink, local=local, await_cloud_ready=True,
                         cloud_ready_timeout_s=0.5)
    store = config.store_id
    births: list[int] = []
    events: list[str] = []

    async with aiomqtt.Client(uplink.host, uplink.port, identifier="cloud") as cloud:
        await cloud.subscribe(topics.state(store), qos=1)
        await cloud.subscribe(topics.evt(store, "sale"), qos=1)

        async def listen() -> None:
            async for msg in cloud.messages:
                if str(msg.topic) == topics.state(store):
                    births.append(1)
                else:
                    events.append(str(msg.topic))

        listener = asyncio.create_task(listen())
        async with running_agent(config) as agent:
            async with aiomqtt.Client(local.host, local.port, identifier="dev") as dev:
                for i in range(5):
                    ev = DeviceEvent(id=f"e-{i}", kind="sale", ts=1)
                    await dev.publish(topics.local("pos", "till-1", "up", "evt"), encode(ev),
                                      qos=1)
            await wait_until(lambda: agent.outbox.depth() == 5, what="5 events in the outbox")
            # Nobody answered: the events stay, and the birth is repeated.
            await wait_until(lambda: len(births) >= 3, what="birth re-published")
            assert agent.outbox.depth() == 5 and not events
            assert metric(agent, "storefleet_uplink_cloud_ready") == 0
            # A ready for another session changes nothing ...
            stale = CloudReady(bd_seq=agent.uplink.bd_seq + 7, ts=1)
            await cloud.publish(topics.ready(store), encode(stale), qos=1)
            await asyncio.sleep(0.3)
            assert agent.outbox.depth() == 5
            # ... the answer to this session's birth drains the outbox.
            ready = CloudReady(bd_seq=agent.uplink.bd_seq, ts=1)
            await cloud.publish(topics.ready(store), encode(ready), qos=1)
            await wait_until(lambda: agent.outbox.depth() == 0, what="outbox drained")
            await wait_until(lambda: len(events) == 5, what="5 events delivered")
            assert metric(agent, "storefleet_uplink_cloud_ready") == 1
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
