"""Fault injection across the whole path: devices -> local Mosquitto -> agent (outbox)
-> cloud Mosquitto -> ingest -> SQLite / PostgreSQL. The ground truth is the list of
event ids the simulated devices had acknowledged by their bus."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from firmware_sim.store import StoreSimulator
from tests.integration.conftest import STORE, Proc, Stack, wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

EVENTS = 5000


def _assert_exactly_once(stack: Stack, produced: list[str], *, events: int = EVENTS) -> None:
    stored = stack.stored_ids()
    assert len(produced) == events and len(set(produced)) == events
    missing = set(produced) - set(stored)
    extra = set(stored) - set(produced)
    twice = [i for i, n in Counter(stored).items() if n > 1]
    assert not missing, f"{len(missing)} events lost"
    assert not extra, f"{len(extra)} events the devices never produced"
    assert not twice, f"{len(twice)} events stored twice"
    assert len(stored) == events


async def _start_store(
    stack: Stack, tmp_path: Path, *, rate: int, events: int = EVENTS
) -> tuple[StoreSimulator, Proc, Proc]:
    """Ingest and agent up and the store online; 4 devices ready to produce ``events``."""
    ingest = stack.ingest().start()
    agent = stack.agent().start()
    await wait_for(
        lambda: bool((stack.store_row() or {}).get("online")), timeout=30, what="store online"
    )
    sim = StoreSimulator(
        bus_url=stack.local_broker.url,
        store_id=STORE,
        devices=4,
        rate=rate,
        max_events=events,
        tele_interval_s=0.5,
        ledger=tmp_path / "ledger",
    )
    return sim, ingest, agent


async def _all_stored_once(
    stack: Stack, sim: StoreSimulator, *, timeout: float, events: int = EVENTS
) -> None:
    try:
        await wait_for(
            lambda: set(sim.produced_ids) <= set(stack.stored_ids()),
            timeout=timeout,
            what="every produced event in the cloud database",
        )
    except AssertionError:
        _assert_exactly_once(stack, sim.produced_ids, events=events)  # says how many
        raise
    await asyncio.sleep(2.0)  # let any late redelivery arrive before counting duplicates
    _assert_exactly_once(stack, sim.produced_ids, events=events)


async def test_agent_kill9_mid_stream_loses_and_duplicates_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    sim, ingest, agent = await _start_store(stack, tmp_path, rate=800)
    run = asyncio.create_task(sim.run(asyncio.Event()))

    await wait_for(lambda: sim.produced >= 1500, timeout=60, what="1500 events produced")
    agent.kill9()
    killed_at = sim.produced
    await asyncio.sleep(1.0)  # devices keep producing into the agent's persistent session
    agent.start()
    await asyncio.wait_for(run, timeout=120)
    assert killed_at < EVENTS, "the kill must land mid-stream"

    await _all_stored_once(stack, sim, timeout=120)
    assert ingest.alive and agent.alive, agent.tail()


async def test_broker_restart_and_60s_ingest_outage_lose_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    sim, ingest, agent = await _start_store(stack, tmp_path, rate=250)
    run = asyncio.create_task(sim.run(asyncio.Event()))

    # 1. The cloud broker restarts mid-stream (graceful: it saves its persistent sessions).
    await wait_for(lambda: sim.produced >= 1000, timeout=60, what="1000 events produced")
    await asyncio.to_thread(stack.cloud_broker.restart)

    # 2. Cloud ingest is down for 60 s while the store keeps producing.
    await wait_for(lambda: sim.produced >= 2000, timeout=60, what="2000 events produced")
    ingest.kill9()
    stored_when_down = len(stack.stored_ids())
    await asyncio.sleep(60)
    assert len(stack.stored_ids()) == stored_when_down, "nothing is stored while ingest is down"
    assert sim.produced > 2000
    ingest.start()

    await asyncio.wait_for(run, timeout=120)
    await _all_stored_once(stack, sim, timeout=120)
    assert agent.alive, agent.tail()


# Mosquitto saves its state (sessions, queued messages) only at this interval and on a
# clean stop; a ``kill -9`` in between loses everything since the last save. An hour
# makes that loss certain within a test: the broker saves nothing while it runs.
_NO_AUTOSAVE = "autosave_interval 3600\n"
CRASH_EVENTS = 3000


async def test_broker_kill9_twice_mid_stream_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    """The broker acknowledges (PUBACK) before it saves; only ingest's ack after its
    commit lets the store forget an event (decision 0028)."""
    stack.cloud_broker.extra_conf = _NO_AUTOSAVE
    stack.cloud_broker.restart()
    sim, ingest, agent = await _start_store(stack, tmp_path, rate=300, events=CRASH_EVENTS)
    run = asyncio.create_task(sim.run(asyncio.Event()))

    for produced in (1000, 2000):

        def reached(n: int = produced) -> bool:
            return sim.produced >= n

        await wait_for(reached, timeout=60, what=f"{produced} events produced")
        await asyncio.to_thread(stack.cloud_broker.kill)  # SIGKILL
        await asyncio.sleep(0.5)
        await asyncio.to_thread(stack.cloud_broker.start)
    await asyncio.wait_for(run, timeout=120)

    await _all_stored_once(stack, sim, timeout=120, events=CRASH_EVENTS)
    assert ingest.alive and agent.alive, agent.tail()


async def test_broker_kill9_with_ingest_down_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    """What the broker queued for an offline ingest dies with it; the store still has it."""
    stack.cloud_broker.extra_conf = _NO_AUTOSAVE
    stack.cloud_broker.restart()
    sim, ingest, agent = await _start_store(stack, tmp_path, rate=300, events=CRASH_EVENTS)
    run = asyncio.create_task(sim.run(asyncio.Event()))

    await wait_for(lambda: sim.produced >= 500, timeout=60, what="500 events produced")
    ingest.kill9()
    await wait_for(lambda: sim.produced >= 2000, timeout=60, what="2000 events produced")
    await asyncio.sleep(1.0)  # the agent hands them to the broker, which queues them
    await asyncio.to_thread(stack.cloud_broker.kill)  # SIGKILL
    await asyncio.sleep(0.5)
    await asyncio.to_thread(stack.cloud_broker.start)
    await asyncio.sleep(2.0)  # the store is back on the broker; ingest is not
    ingest.start()

    await asyncio.wait_for(run, timeout=120)
    await _all_stored_once(stack, sim, timeout=120, events=CRASH_EVENTS)
    assert agent.alive, agent.tail()
