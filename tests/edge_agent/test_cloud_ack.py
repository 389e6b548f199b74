"""The outbox keeps an event until the cloud acknowledged its commit (``topics.ack``,
decision 0028), not the broker's PUBACK; unacknowledged events are sent again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from protocols import decode, encode, topics
from protocols.messages import CloudReady, DeviceEvent, Event, EventsAck
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


async def test_events_leave_the_outbox_on_the_clouds_ack_only(
    tmp_path: Path, mosquitto_factory: object
) -> None:
    uplink: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    local: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    config = make_config(tmp_path, uplink=uplink, local=local, await_cloud_ready=True,
                         await_cloud_ack=True, cloud_ready_timeout_s=0.5,
                         cloud_ack_timeout_s=1.0, cloud_ack_timeout_max_s=60.0)
    store = config.store_id
    received: list[Event] = []

    async with aiomqtt.Client(uplink.host, uplink.port, identifier="cloud") as cloud:
        await cloud.subscribe(topics.evt(store, "sale"), qos=1)

        async def listen() -> None:
            async for msg in cloud.messages:
                assert isinstance(msg.payload, bytes)
                received.append(decode(msg.payload, Event))

        async def ack(ids: list[str]) -> None:
            await cloud.publish(topics.ack(store), encode(EventsAck(ids=ids, ts=1)), qos=1)

        def sent(event_id: str) -> int:
            return sum(1 for e in received if e.id == event_id)

        listener = asyncio.create_task(listen())
        async with running_agent(config) as agent:
            async with aiomqtt.Client(local.host, local.port, identifier="dev") as dev:
                for i in range(5):
                    ev = DeviceEvent(id=f"e-{i}", kind="sale", ts=1)
                    await dev.publish(topics.local("pos", "till-1", "up", "evt"), encode(ev),
                                      qos=1)
            await wait_until(lambda: agent.outbox.depth() == 5, what="5 events in the outbox")
            ready = CloudReady(bd_seq=agent.uplink.bd_seq, ts=1)
            await cloud.publish(topics.ready(store), encode(ready), qos=1)
            await wait_until(lambda: len(received) >= 5, what="5 events delivered")
            ids = [e.id for e in received[:5]]

            # The broker acknowledged all five; the cloud has not: all stay.
            await asyncio.sleep(0.2)
            assert agent.outbox.depth() == 5
            assert metric(agent, "storefleet_uplink_unacked_oldest_age_seconds") > 0
            await ack(ids[:3])
            await wait_until(lambda: agent.outbox.depth() == 2, what="3 acked events deleted")
            assert metric(agent, "storefleet_events_cloud_acked_total") == 3

            # No ack for the other two within the timeout: sent again, as historical.
            await wait_until(lambda: all(sent(i) >= 2 for i in ids[3:]), what="re-sent")
            assert all(sent(i) == 1 for i in ids[:3])
            assert all(e.historical for e in received[5:])
            assert metric(agent, "storefleet_uplink_resent_total", reason="timeout") >= 2
            # The wait doubles: 2 s after the first re-send, not 1 s.
            copies = len(received)
            await asyncio.sleep(1.2)
            assert len(received) == copies

            # The cloud answers a birth again (ingest reconnected): re-sent at once.
            await cloud.publish(topics.ready(store), encode(ready), qos=1)
            await wait_until(lambda: all(sent(i) >= 3 for i in ids[3:]), within_s=1.0,
                             what="re-sent on ready")
            assert metric(agent, "storefleet_uplink_resent_total", reason="ready") >= 2

            await ack(ids[3:])
            await wait_until(lambda: agent.outbox.depth() == 0, what="outbox drained")
            assert metric(agent, "storefleet_uplink_unacked_oldest_age_seconds") == 0
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
