"""A store's birth always fits, and a birth ingest cannot take is answered, not ignored
(issue 12 item 2, decision 0024). Real Mosquitto (cloud and store-local), the real
ingest worker on SQLite and PostgreSQL, the real agent.

The agent is started first, with no ingest: it learns every retained device state and
keeps waiting for ``ready``. Ingest then connects and asks every store for a rebirth,
so the birth it judges is the one naming all the devices (no race with an earlier,
emptier birth).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from cloud.db import make_engine
from cloud.db.models import Event, Store
from protocols import decode, encode, topics
from protocols.messages import BIRTH_MAX_BYTES, BirthRefused, DeviceEvent, DeviceState
from tests.cloud.conftest import make_settings, make_worker, publish, running
from tests.cloud.conftest import metric as cloud_metric
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until, watch
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

BIG_MODEL = "m" * 150_000  # the report: schema-valid, retained, 150 kB each


def _state(model: str) -> bytes:
    return encode(DeviceState(online=True, model=model, fw="1.0", ts=1))


def _stored(db_url: str, store_id: str) -> tuple[dict[str, Any] | None, int]:
    """The store's last accepted birth and how many of its events the cloud holds."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            birth = conn.execute(
                select(Store.birth).where(Store.store_id == store_id)).scalar_one_or_none()
            events = conn.execute(select(Event.id).where(Event.store_id == store_id)).all()
        return birth, len(events)
    finally:
        engine.dispose()


async def test_oversized_device_states_are_refused_and_the_uplink_flows(
    tmp_path: Path, mosquitto_factory: Any, db_url: str
) -> None:
    uplink: Mosquitto = mosquitto_factory()
    local: Mosquitto = mosquitto_factory()
    config = make_config(tmp_path, uplink=uplink, local=local, await_cloud_ready=True,
                         cloud_ready_timeout_s=1.0)
    store = config.store_id
    await publish(local.url, [
        (topics.local("pos", "till-big-1", "up", "state"), _state(BIG_MODEL)),
        (topics.local("pos", "till-big-2", "up", "state"), _state(BIG_MODEL)),
        (topics.local("pos", "till-1", "up", "state"), _state("m1")),
    ], retain=True)
    registry = CollectorRegistry()
    worker = make_worker(make_settings(db_url, uplink.url), registry)

    async with running_agent(config) as agent:
        await wait_until(lambda: len(agent.devices.snapshot()) == 3, what="3 devices known")
        # Refused at the edge, counted, and known as refused (nothing of its state kept).
        assert metric(agent, "storefleet_agent_bad_payloads_total",
                      source="local", reason="state_too_large") == 2
        assert agent.devices.refused() == {"till-big-1": "state_too_large",
                                           "till-big-2": "state_too_large"}
        birth = agent._birth(agent.uplink.bd_seq)
        assert len(encode(birth)) < 2_000  # was 301,096 bytes
        # Events wait: nobody has answered the birth yet.
        await publish(local.url, [
            (topics.local("pos", "till-1", "up", "evt"),
             encode(DeviceEvent(id=f"{store}-e{i}", kind="sale", ts=1)))
            for i in range(5)])
        await wait_until(lambda: agent.outbox.depth() == 5, what="5 events in the outbox")

        async with running(worker):
            await wait_until(lambda: metric(agent, "storefleet_uplink_cloud_ready") == 1,
                             within_s=20, what="ready for the birth naming every device")
            await wait_until(lambda: agent.outbox.depth() == 0, within_s=20,
                             what="the outbox drained")
            stored = await _wait_stored(db_url, store, events=5)
        assert metric(agent, "storefleet_uplink_birth_refused_total",
                      reason="too_large") == 0
        assert cloud_metric(registry, "storefleet_ingest_rejected_total",
                            reason="too_large") == 0
    devices = {d["device_id"]: d for d in stored["devices"]}
    assert set(devices) == {"till-1", "till-big-1", "till-big-2"}
    assert devices["till-big-1"]["refused"] == "state_too_large"
    assert devices["till-big-1"]["model"] is None
    assert (devices["till-1"]["model"], devices["till-1"]["refused"]) == ("m1", None)


async def _wait_stored(db_url: str, store_id: str, *, events: int) -> dict[str, Any]:
    """The stored birth once it names 3 devices and ``events`` events are stored."""
    for _ in range(200):
        birth, n = await asyncio.to_thread(_stored, db_url, store_id)
        if birth is not None and len(birth["devices"]) == 3 and n == events:
            return birth
        await asyncio.sleep(0.1)
    raise AssertionError(f"cloud holds birth {birth!r:.300} and {n} events")


async def test_a_birth_ingest_cannot_take_is_refused_and_the_store_alarms(
    tmp_path: Path, mosquitto_factory: Any, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    uplink: Mosquitto = mosquitto_factory()
    local: Mosquitto = mosquitto_factory()
    config = make_config(tmp_path, uplink=uplink, local=local, await_cloud_ready=True,
                         cloud_ready_timeout_s=1.0, health_interval_s=0.2)
    store = config.store_id
    await publish(local.url, [(topics.local("pos", f"till-{i:02d}", "up", "state"), _state("m1"))
                              for i in range(30)], retain=True)
    # Ingest deployed with a payload cap below this store's birth (~3.5 kB, 30 devices):
    # a misconfiguration the store cannot fix, so it must be told, and tell its operator.
    registry = CollectorRegistry()
    worker = make_worker(make_settings(db_url, uplink.url, max_payload=2048), registry)
    caplog.set_level(logging.INFO, logger="edge_agent")

    async with running_agent(config) as agent, watch(uplink, store) as seen:
        await wait_until(lambda: len(agent.devices.snapshot()) == 30, what="30 devices known")
        assert 2048 < len(encode(agent._birth(agent.uplink.bd_seq))) < BIRTH_MAX_BYTES
        await publish(local.url, [(topics.local("pos", "till-00", "up", "evt"),
                                   encode(DeviceEvent(id=f"{store}-e1", kind="sale", ts=1)))])
        await wait_until(lambda: agent.outbox.depth() == 1, what="an event in the outbox")
        async with running(worker):
            await wait_until(
                lambda: metric(agent, "storefleet_uplink_birth_refused_total",
                               reason="too_large") >= 2,
                within_s=20, what="the refusal counted (twice: refused again on retry)")
            # The refusal is explicit, on ready, for this session's birth (the test's own
            # subscriber may get it a moment after the agent did).
            await wait_until(lambda: bool(seen.on(topics.ready(store))),
                             what="the refusal seen on ready")
            answers = [decode(p, BirthRefused) for p in seen.on(topics.ready(store))]
            assert answers and answers[0].reason == "too_large"
            assert answers[0].bd_seq == agent.uplink.bd_seq
            assert cloud_metric(registry, "storefleet_ingest_births_refused_total",
                                reason="too_large") >= 2
            # The store alarms: gauge, reported shadow; nothing drains.
            assert metric(agent, "storefleet_uplink_birth_refused_alarm") == 1
            assert metric(agent, "storefleet_uplink_cloud_ready") == 0
            assert agent.outbox.depth() == 1
            await wait_until(lambda: _reported_alarm(seen.on(topics.shadow_reported(store))),
                             what="the alarm in the reported shadow")
    alarm = _reported_alarm(seen.on(topics.shadow_reported(store)))
    assert alarm == {"reason": "too_large", "bd_seq": answers[0].bd_seq,
                     "detail": answers[0].detail}
    errors = [r for r in caplog.records
              if r.levelno == logging.ERROR and "cloud refused birth" in r.getMessage()]
    assert len(errors) == 1, "one ERROR per cause; its repeats at INFO"
    assert "too_large" in errors[0].getMessage()


def _reported_alarm(payloads: list[bytes]) -> dict[str, Any] | None:
    for payload in reversed(payloads):
        alarm = json.loads(payload)["state"].get("alarms", {}).get("birth_refused")
        if alarm:
            return dict(alarm)
    return None
