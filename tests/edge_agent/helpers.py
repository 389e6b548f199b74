"""Test helpers: run an agent in-process, watch the uplink broker, act as a device."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from prometheus_client import CollectorRegistry

from edge_agent.app import Agent
from edge_agent.config import AgentConfig
from protocols import topics
from protocols.clock import Clock
from protocols.codec import encode
from protocols.ids import uuid7
from protocols.messages import DeviceEvent, DeviceState
from tests.services import Mosquitto, free_port

REPO = Path(__file__).resolve().parents[2]

_stores = itertools.count(1)


def new_store_id() -> str:
    return f"s-{next(_stores):03d}-{uuid7()[-6:]}"


def make_config(
    tmp_path: Path, *, uplink: Mosquitto, local: Mosquitto | None, **overrides: Any
) -> AgentConfig:
    values: dict[str, Any] = {
        "store_id": new_store_id(),
        "data_dir": tmp_path / "agent",
        "cloud_url": uplink.url,
        "local_bus": local.url if local is not None else "embedded",
        # An embedded bus gets a port of its own: the default 1884 is the README's,
        # which the demo and deployment tests bind in parallel workers.
        "local_bus_port": free_port(),
        "metrics_port": 0,
        "keepalive_s": 2,  # quick Last Will in the tests
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "telemetry_interval_s": 0.2,
        "birth_debounce_s": 0.2,
        "shutdown_drain_s": 2.0,
        # These tests run no cloud ingest, so nobody answers the birth with ``ready``
        # (test_cloud_ready.py covers the handshake itself).
        "await_cloud_ready": False,
        # Nor acknowledges events after commit: rows leave the outbox on the broker's
        # PUBACK (test_cloud_ack.py covers the acknowledgement itself).
        "await_cloud_ack": False,
    }
    values.update(overrides)
    return AgentConfig(**values)


def metric(agent: Agent, metric_name: str, /, **labels: str) -> float:
    value = agent.metrics.registry.get_sample_value(metric_name, labels or None)
    return 0.0 if value is None else value


async def wait_until(cond: Callable[[], object], *, within_s: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_agent(
    config: AgentConfig, *, clock: Clock | None = None, connected: bool = True
) -> AsyncIterator[Agent]:
    """Run an Agent in a task; stop it cleanly (and surface its errors) on exit."""
    agent = Agent(config, clock=clock, registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop=stop), name=f"test-agent-{config.store_id}")
    try:
        await wait_until(lambda: agent.ready.is_set() or task.done(), what="agent ready")
        if task.done():
            task.result()
        if connected:
            await wait_until(
                lambda: agent.uplink.connected and agent.local.connected, what="agent connected"
            )
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Watcher:
    """Everything published on the uplink broker under one store (plus fleet topics)."""

    messages: list[Received] = field(default_factory=list)

    def on(self, topic: str) -> list[bytes]:
        return [m.payload for m in self.messages if m.topic == topic]

    def under(self, prefix: str) -> list[Received]:
        return [m for m in self.messages if m.topic.startswith(prefix)]


@contextlib.asynccontextmanager
async def watch(broker: Mosquitto, store_id: str) -> AsyncIterator[Watcher]:
    watcher = Watcher()
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"watch-{uuid7()}") as client:
        await client.subscribe(f"{topics.store_root(store_id)}/#", qos=1)

        async def collect() -> None:
            async for msg in client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes) else b""
                watcher.messages.append(Received(str(msg.topic), payload, msg.retain))

        task = asyncio.create_task(collect(), name="test-watch")
        try:
            yield watcher
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def device(broker: Mosquitto, kind: str, device_id: str) -> AsyncIterator[aiomqtt.Client]:
    """A local-bus device: retained online state, Last Will offline."""
    will = aiomqtt.Will(
        topics.local(kind, device_id, "up", "state"),
        encode(DeviceState(online=False)),
        qos=1,
        retain=True,
    )
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=f"dev-{device_id}", will=will
    ) as client:
        await client.publish(
            topics.local(kind, device_id, "up", "state"),
            encode(DeviceState(online=True, model="m1", fw="1.0")),
            qos=1,
            retain=True,
        )
        yield client


def device_event(kind: str = "sale", **data: Any) -> DeviceEvent:
    return DeviceEvent(id=uuid7(), kind=kind, ts=int(time.time() * 1000), data=data)


async def publish_events(
    client: aiomqtt.Client, kind: str, device_id: str, events: list[DeviceEvent]
) -> None:
    topic = topics.local(kind, device_id, "up", "evt")
    for ev in events:
        await client.publish(topic, encode(ev), qos=1)


@contextlib.contextmanager
def agent_process(*, store_id: str, conf: Path, cloud_url: str, local_url: str,
                  data_dir: Path, log: Path, log_level: str = "WARNING"
                  ) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m edge_agent run`` as its own process (the kill -9 tests' agent), its
    output appended to ``log``; SIGTERM (then SIGKILL after 15 s) on leaving, unless the
    test already killed it."""
    cmd = [sys.executable, "-m", "edge_agent", "run", "--config", str(conf),
           "--store", store_id, "--cloud", cloud_url, "--local-bus", local_url,
           "--data-dir", str(data_dir), "--metrics-port", "0", "--log-level", log_level]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
