"""Store liveness in the cloud follows the agent's MQTT session (birth / Last Will)."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import Stack, wait_for

pytestmark = pytest.mark.mosquitto

KEEPALIVE_S = 2
# The broker gives up on a silent client after 1.5 x keepalive, checked on whole
# seconds (Mosquitto 2.0), and a loaded 2-core CI box adds scheduling delay:
# offline must show within this bound, far below "forever" and well below what a
# missing Last Will (a store looking online until the next birth) would give.
OFFLINE_BOUND_S = KEEPALIVE_S * 1.5 + 7


def _online(stack: Stack) -> bool:
    return bool((stack.store_row() or {}).get("online"))


def _bd_seq(stack: Stack) -> int:
    return int((stack.store_row() or {}).get("bd_seq") or 0)


async def test_frozen_agent_goes_offline_within_keepalive_and_returns_with_higher_bd_seq(
    stack: Stack,
) -> None:
    stack.ingest().start()
    agent = stack.agent(keepalive_s=KEEPALIVE_S).start()
    await wait_for(lambda: _online(stack), timeout=30, what="store online")
    first = _bd_seq(stack)

    # A frozen box keeps its socket open but stops answering: only the keep-alive
    # can tell. The broker gives up after 1.5 x keepalive and publishes the Will.
    agent.freeze()
    frozen_at = time.monotonic()
    try:
        await wait_for(
            lambda: not _online(stack),
            timeout=OFFLINE_BOUND_S,
            what="store offline after the keep-alive window",
        )
        took = time.monotonic() - frozen_at
    finally:
        agent.thaw()
    assert took <= OFFLINE_BOUND_S

    await wait_for(lambda: _online(stack), timeout=30, what="store back online")
    assert _bd_seq(stack) > first


async def test_killed_agent_goes_offline_and_restart_comes_back_with_higher_bd_seq(
    stack: Stack,
) -> None:
    stack.ingest().start()
    agent = stack.agent(keepalive_s=KEEPALIVE_S).start()
    await wait_for(lambda: _online(stack), timeout=30, what="store online")
    first = _bd_seq(stack)

    agent.kill9()  # the socket closes: the broker publishes the Will at once
    await wait_for(
        lambda: not _online(stack), timeout=OFFLINE_BOUND_S, what="store offline after kill -9"
    )
    agent.start()
    await wait_for(
        lambda: _online(stack) and _bd_seq(stack) > first,
        timeout=30,
        what="store online with a higher bd_seq",
    )


async def test_clean_stop_publishes_death(stack: Stack) -> None:
    stack.ingest().start()
    agent = stack.agent().start()
    await wait_for(lambda: _online(stack), timeout=30, what="store online")
    assert agent.terminate() == 0
    await wait_for(lambda: not _online(stack), timeout=10, what="store offline after SIGTERM")
