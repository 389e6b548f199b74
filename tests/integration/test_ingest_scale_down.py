"""Scaling ingest down parks nothing (issue 12 item 6, decision 0029).

Two ingest workers share the subscription; a real agent sends a steady stream; one
worker gets SIGTERM mid-stream. Its clean stop unsubscribes, drains what was routed to
it and ends its session, so every event is stored once and promptly. Before, the stopped
worker's persistent session kept its share of the subscription: the broker parked half
of the new events there, and they reached the database only when the stores re-sent
them after their 30 s ack timeout (decision 0028).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from firmware_sim.store import StoreSimulator
from tests.integration.conftest import STORE, Stack, wait_for
from tests.integration.test_nothing_lost import _all_stored_once

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

EVENTS = 2400
RATE = 150  # events/s: the stream runs ~12 s past the stop
# Far below the stores' 30 s ack timeout: an event parked for the stopped worker would
# only arrive after it (the first re-send of an event sent after the stop is at least
# 30 - 12 = 18 s after the stream ends).
PROMPT_S = 10.0
DRAIN_S = 3.0


async def test_sigterm_of_one_of_two_workers_hands_over_promptly(
    stack: Stack, tmp_path: Path
) -> None:
    leaving = stack.ingest("ingest-leaving")
    leaving.args += ["--drain-s", str(DRAIN_S)]
    leaving.start()
    staying = stack.ingest("ingest-staying").start()
    agent = stack.agent().start()
    await wait_for(
        lambda: bool((stack.store_row() or {}).get("online")), timeout=30, what="store online"
    )
    sim = StoreSimulator(
        bus_url=stack.local_broker.url,
        store_id=STORE,
        devices=4,
        rate=RATE,
        max_events=EVENTS,
        tele_interval_s=0.5,
        ledger=tmp_path / "ledger",
    )
    run = asyncio.create_task(sim.run(asyncio.Event()))
    await wait_for(lambda: sim.produced >= 600, timeout=60, what="600 events produced")

    loop = asyncio.get_running_loop()
    stop_at = loop.time()
    assert await asyncio.to_thread(leaving.terminate, 20) == 0, leaving.tail()
    assert loop.time() - stop_at < DRAIN_S + 5, "the drain is bounded by --drain-s"
    assert sim.produced < EVENTS - 1000, "the stop must land mid-stream"

    await asyncio.wait_for(run, timeout=120)
    await _all_stored_once(stack, sim, timeout=PROMPT_S, events=EVENTS)

    drained = re.findall(r"clean stop: unsubscribed, drained (\d+) messages", leaving.tail())
    assert len(drained) == 1, leaving.tail()
    assert staying.alive and agent.alive, staying.tail()
