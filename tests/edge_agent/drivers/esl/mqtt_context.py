"""A DriverContext whose local bus is a real MQTT broker (aiomqtt), for driver <->
simulator tests until the agent's own context (``edge_agent/drivers/context.py``) is
wired. Business events and telemetry are recorded as in ``FakeContext``."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field

import aiomqtt

from edge_agent.drivers.testing import FakeContext
from protocols import topics


@dataclass
class MqttContext(FakeContext):
    host: str = "127.0.0.1"
    port: int = 1883
    delivered: Counter[str] = field(default_factory=Counter)  # "kind/type" -> count
    _client: aiomqtt.Client | None = None
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MqttContext:
        self._client = await self._stack.enter_async_context(
            aiomqtt.Client(self.host, self.port, identifier=f"test-agent-{id(self)}")
        )
        await self._client.subscribe(topics.local_up_filter(), qos=1)
        self._task = asyncio.create_task(self._receive(), name="test-mqtt-context")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._stack.aclose()

    async def publish_local(self, topic: str, payload: bytes, *, qos: int = 1,
                            retain: bool = False) -> None:
        assert self._client is not None
        await self._client.publish(topic, payload, qos=qos, retain=retain)
        self.published.append((topic, payload, qos, retain))

    async def _receive(self) -> None:
        assert self._client is not None
        async for msg in self._client.messages:
            where = topics.parse_local(str(msg.topic))
            if where.type in ("evt", "tele", "state"):
                continue
            payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
            await self.deliver_local(where.device_kind, where.device_id, where.type, payload)
            self.delivered[f"{where.device_kind}/{where.type}"] += 1

    async def wait_delivered(self, key: str, n: int, timeout: float = 5.0) -> None:
        async def wait() -> None:
            while self.delivered[key] < n:  # noqa: ASYNC110 - polls counters
                await asyncio.sleep(0.002)

        await asyncio.wait_for(wait(), timeout)
