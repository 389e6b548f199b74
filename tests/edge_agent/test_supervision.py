"""The supervision tree (issue 13, failures 1 and 5; decision 0030): a crash of one part
is logged, counted and restarted, or, for a critical part, stops the agent cleanly."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiomqtt
import pytest
from prometheus_client import CollectorRegistry

from edge_agent.app import Agent
from edge_agent.errors import AgentFailed
from edge_agent.kernel.supervisor import Supervisor
from edge_agent.modules.till import Till
from edge_agent.pos.peripherals import PosError
from protocols import topics
from protocols.backoff import Backoff
from protocols.codec import decode, encode
from protocols.messages import Command, CommandResult
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until, watch
from tests.services import Mosquitto


def fast() -> Backoff:
    return Backoff(min_s=0.01, max_s=0.05)


def restarts(registry: CollectorRegistry, task: str) -> float:
    return registry.get_sample_value("storefleet_task_restarts_total", {"task": task}) or 0.0


async def test_a_crashing_child_is_logged_counted_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    runs: list[int] = []
    steady = asyncio.Event()

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise OSError(28, "No space left on device")
        steady.set()
        await asyncio.Event().wait()

    async with Supervisor("t", registry=registry, backoff=fast) as tree:
        tree.start("flaky", flaky)
        await asyncio.wait_for(steady.wait(), 5)
        assert tree.states()["flaky"] == {
            "state": "running", "critical": False, "restarts": 2,
            "last_error": "OSError: [Errno 28] No space left on device"}
    assert restarts(registry, "flaky") == 2
    assert tree.states()["flaky"]["state"] == "stopped"
    crashes = [r for r in caplog.records if "task flaky crashed" in r.getMessage()]
    assert len(crashes) == 2 and all(r.exc_info for r in crashes)  # with the traceback
    assert not tree.failed.is_set()


async def test_a_critical_child_crash_fails_the_tree_and_is_not_restarted() -> None:
    registry = CollectorRegistry()
    runs: list[int] = []

    async def broken() -> None:
        runs.append(1)
        raise RuntimeError("disk gone")

    async with Supervisor("t", registry=registry, backoff=fast) as tree:
        tree.start("db", broken, critical=True)
        await asyncio.wait_for(tree.failed.wait(), 5)
        await asyncio.sleep(0.1)
    assert runs == [1]
    assert tree.failure is not None and tree.failure[0] == "db"
    assert tree.states()["db"]["state"] == "failed"
    assert restarts(registry, "db") == 1


async def test_stop_asks_first_then_cancels_and_always_awaits() -> None:
    registry = CollectorRegistry()
    stop = asyncio.Event()
    ended: list[str] = []

    async def polite() -> None:
        await stop.wait()
        await asyncio.sleep(0.05)  # a drain
        ended.append("polite")

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.05)  # cleanup while cancelled: awaited, not forgotten
            ended.append("stubborn")

    async with Supervisor("t", registry=registry) as tree:
        tree.start("polite", polite, stop=stop.set)
        tree.start("stubborn", stubborn)
        await asyncio.sleep(0.05)
        await tree.stop_child("stubborn")
        assert ended == ["stubborn"]  # stop_child returned only after the child ended
    assert ended == ["stubborn", "polite"]
    assert {n: s["state"] for n, s in tree.states().items()} == {
        "polite": "stopped", "stubborn": "stopped"}


@pytest.mark.mosquitto
async def test_till_sync_crash_is_logged_counted_and_restarted(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Failure 1: ``pos.sync_forever()`` raising (disk full) left the agent ``ready`` with
    the error never logged and the till never refreshing prices again."""
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker,
                      reconnect_min_s=0.05, reconnect_max_s=0.1)
    agent = Agent(cfg, registry=CollectorRegistry())
    calls: list[int] = []
    resumed = asyncio.Event()

    async def sync_forever() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        resumed.set()
        await asyncio.Event().wait()

    agent.get(Till).pos.sync_forever = sync_forever  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop=stop))
    try:
        await asyncio.wait_for(resumed.wait(), 10)
        assert agent.ready.is_set() and not task.done()
        assert metric(agent, "storefleet_task_restarts_total", task="pos-sync") == 1
        state = agent.diagnostics()["tasks"]["pos-sync"]
        assert state["state"] == "running" and "No space left" in state["last_error"]
        assert any("pos-sync crashed" in r.getMessage() and r.levelno == logging.ERROR
                   for r in caplog.records)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@pytest.mark.mosquitto
async def test_a_downlink_handler_raising_any_error_never_ends_the_agent(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto,
) -> None:
    """Failure 5: a handler raising ``PosError`` (or any error outside the agent's own)
    escaped the guard, ended the uplink task and with it the whole agent."""
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker)

    async def broken(_payload: bytes) -> None:
        raise PosError("printer on fire")

    async with watch(uplink_broker, cfg.store_id) as seen, running_agent(cfg) as agent:
        agent.get(Till).pos.orders.handle = broken  # type: ignore[method-assign,assignment]
        async with aiomqtt.Client(uplink_broker.host, uplink_broker.port) as cloud:
            await cloud.publish(topics.orders(cfg.store_id), b"{}", qos=1)
            await wait_until(lambda: metric(agent, "storefleet_agent_bad_payloads_total",
                                            source="cloud", reason="handler_error") == 1,
                             what="the failed handler counted")
            ping = Command(cmd_id="c-1", name="ping", expires_at=2**42, ts=1)
            await cloud.publish(topics.cmd(cfg.store_id), encode(ping), qos=1)
            result = topics.cmd_res(cfg.store_id)
            await wait_until(lambda: seen.on(result), what="the next command answered")
        assert decode(seen.on(result)[0], CommandResult).status == "ok"
        assert agent.uplink.connected


@pytest.mark.mosquitto
async def test_a_critical_crash_stops_the_agent_cleanly_with_an_error(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto,
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker)
    agent = Agent(cfg, registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop=stop))
    await wait_until(agent.ready.is_set, what="ready")

    async def broken() -> None:
        raise RuntimeError("cannot go on")

    agent.module_tasks.start("vital", broken, critical=True)
    with pytest.raises(AgentFailed, match="vital"):
        await asyncio.wait_for(task, 20)
    assert not agent.ready.is_set()
    # everything stopped and awaited: no task of the agent is left behind
    left = [t for t in asyncio.all_tasks() if t.get_name().startswith(("kernel:", "modules:"))]
    assert left == []
