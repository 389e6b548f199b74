"""Publishing from the cloud to stores: a one-method interface and two implementations.

    class Publisher(Protocol):
        async def publish(self, topic, payload, *, qos, retain) -> None

``MqttPublisher`` keeps one broker connection (connected on first use, reconnected
when it fails). ``MemoryPublisher`` is the fake that ships with the package (like
httpx's MockTransport): tests and the docs' examples use it instead of patching.
Both raise ``cloud.errors.PublishError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Protocol

import aiomqtt

from cloud.errors import PublishError
from cloud.settings import CloudSettings
from protocols.ids import uuid7

logger = logging.getLogger(__name__)

# Seconds to wait for the broker's PUBACK before calling a publish failed.
PUBLISH_TIMEOUT_S = 5.0


class Publisher(Protocol):
    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        """Hand ``payload`` to the broker; returns once QoS 1 messages are acknowledged."""
        ...


@dataclass(frozen=True, slots=True)
class Published:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class MemoryPublisher:
    """Records what was published; set ``fail = True`` to make publishing fail."""

    messages: list[Published] = field(default_factory=list)
    retained: dict[str, Published] = field(default_factory=dict)
    fail: bool = False

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        if self.fail:
            raise PublishError(topic, "MemoryPublisher.fail is set")
        msg = Published(topic, bytes(payload), qos, retain)
        self.messages.append(msg)
        if retain:
            self.retained[topic] = msg

    def on(self, topic: str) -> list[Published]:
        return [m for m in self.messages if m.topic == topic]


class MqttPublisher:
    """One lazily opened aiomqtt connection shared by all requests of an app."""

    def __init__(self, settings: CloudSettings, *, client_id: str | None = None) -> None:
        self._settings = settings
        # Each API replica is its own client; a random suffix keeps replicas apart.
        self._client_id = client_id or f"storefleet-api-{uuid7()[-12:]}"
        self._lock = asyncio.Lock()
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: aiomqtt.Client | None = None

    async def _connect(self) -> aiomqtt.Client:
        if self._client is not None:
            # aiomqtt resolves ``_disconnected`` when the socket drops; without this
            # check a publish on a dead connection waits for its timeout first.
            if not self._client._disconnected.done():
                return self._client
            await self._drop()
        client = aiomqtt.Client(
            **self._settings.mqtt.client_options(),  # mqtt:// or mqtts:// (decision 0032)
            identifier=self._client_id,
            keepalive=self._settings.keepalive_s,
            timeout=PUBLISH_TIMEOUT_S,
        )
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(client)
        self._stack, self._client = stack, client
        logger.info("publisher connected to %s as %s", self._settings.mqtt.url, self._client_id)
        return client

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        async with self._lock:
            # Two tries: the kept connection may have died since the last publish.
            for attempt in (1, 2):
                try:
                    client = await self._connect()
                    await client.publish(topic, payload, qos=qos, retain=retain)
                    return
                except aiomqtt.MqttError as err:
                    await self._drop()
                    if attempt == 2:
                        raise PublishError(topic, str(err)) from err
                    logger.info("publisher: %s; reconnecting", err)

    async def _drop(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                await stack.aclose()

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()
