"""The agent's side of a refused birth (decision 0024): which refusals are its own, and
that a later ``ready`` clears the alarm and drains the outbox. The cloud is played by a
client on a real Mosquitto; tests/integration/test_birth_limits.py uses real ingest."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from protocols import encode, topics
from protocols.messages import BirthRefused, CloudReady, DeviceEvent
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


async def test_refusals_of_this_session_alarm_until_a_ready(
    tmp_path: Path, mosquitto_factory: object
) -> None:
    uplink: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    local: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    config = make_config(tmp_path, uplink=uplink, local=local, await_cloud_ready=True,
                         cloud_ready_timeout_s=30)
    store = config.store_id

    def refusals(reason: str) -> float:
        return metric(agent, "storefleet_uplink_birth_refused_total", reason=reason)

    async with aiomqtt.Client(uplink.host, uplink.port, identifier="cloud") as cloud, \
            running_agent(config) as agent:
        async def answer(msg: BirthRefused | CloudReady) -> None:
            await cloud.publish(topics.ready(store), encode(msg), qos=1)
            await asyncio.sleep(0.3)

        async with aiomqtt.Client(local.host, local.port, identifier="dev") as dev:
            await dev.publish(topics.local("pos", "till-1", "up", "evt"),
                              encode(DeviceEvent(id="e-1", kind="sale", ts=1)), qos=1)
        await wait_until(lambda: agent.outbox.depth() == 1, what="an event in the outbox")
        bd_seq = agent.uplink.bd_seq
        # Another session's refusal is old news.
        await answer(BirthRefused(bd_seq=bd_seq + 1, reason="too_large", ts=1))
        assert refusals("too_large") == 0 and agent.uplink.birth_refusal is None
        # This session's, and one that could not name a session, count and alarm.
        await answer(BirthRefused(bd_seq=bd_seq, reason="too_large", detail="d", ts=1))
        await answer(BirthRefused(reason="not_json", ts=1))
        assert (refusals("too_large"), refusals("not_json")) == (1, 1)
        assert metric(agent, "storefleet_uplink_birth_refused_alarm") == 1
        assert agent.alarms()["birth_refused"] == {"reason": "not_json", "bd_seq": None,
                                                   "detail": ""}
        assert agent.outbox.depth() == 1  # nothing drains
        # The cloud takes a birth of this session: alarm cleared, the outbox drains.
        await answer(CloudReady(bd_seq=bd_seq, ts=1))
        await wait_until(lambda: agent.outbox.depth() == 0, what="outbox drained")
        assert metric(agent, "storefleet_uplink_birth_refused_alarm") == 0
        assert "birth_refused" not in agent.alarms()
        # Once this session is accepted, a refusal naming no session is not about it.
        await answer(BirthRefused(reason="not_json", ts=1))
        assert refusals("not_json") == 1
