"""Publishing from the cloud to stores: a one-method interface and two implementations.

    class Publisher(Protocol):
        async def publish(self, topic, payload, *, qos, retain) -> None
        async def publish_many(self, messages, *, qos, retain) -> list[int]  # not taken

``MqttPublisher`` keeps one broker connection (connected on first use, reconnected
when it fails). ``MemoryPublisher`` is the fake that ships with the package (like
httpx's MockTransport): tests and the docs' examples use it instead of patching.
Both raise ``cloud.errors.PublishError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiomqtt

from cloud.errors import PublishError
from cloud.settings import CloudSettings
from protocols.ids import uuid7

logger = logging.getLogger(__name__)

# Seconds to wait for the broker's PUBACK before calling a publish failed.
PUBLISH_TIMEOUT_S = 5.0
# publish_many's messages awaiting their PUBACK at once: a fleet-wide command to 5,000
# stores is 10 pipelined rounds, not 5,000 round trips (decision 0061); paho queues what
# is past its own in-flight window and sends it as PUBACKs come back.
PIPELINE = 500


class Publisher(Protocol):
    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        """Hand ``payload`` to the broker; returns once QoS 1 messages are acknowledged."""
        ...

    async def publish_many(self, messages: Sequence[tuple[str, bytes]], *, qos: int,
                           retain: bool) -> list[int]:
        """Hand every ``(topic, payload)`` to the broker without a round trip each;
        returns the indexes of those not taken (empty: all were)."""
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

    async def publish_many(self, messages: Sequence[tuple[str, bytes]], *, qos: int,
                           retain: bool) -> list[int]:
        if self.fail:
            return list(range(len(messages)))
        for topic, payload in messages:
            await self.publish(topic, payload, qos=qos, retain=retain)
        return []

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
        # A cluster's hosts: each new connection goes to the next (decision 0062).
        self._hosts = settings.mqtt.rotation(seed=self._client_id)

    async def _connect(self) -> aiomqtt.Client:
        if self._client is not None:
            # aiomqtt resolves ``_disconnected`` when the socket drops; without this
            # check a publish on a dead connection waits for its timeout first.
            if not self._client._disconnected.done():
                return self._client
            await self._drop()
        address = next(self._hosts)
        client = aiomqtt.Client(
            **address.client_options(),  # mqtt:// or mqtts:// (decision 0032)
            identifier=self._client_id,
            keepalive=self._settings.keepalive_s,
            timeout=PUBLISH_TIMEOUT_S,
        )
        client.pending_calls_threshold = PIPELINE + 16  # aiomqtt warns above 10 otherwise
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(client)
        self._stack, self._client = stack, client
        logger.info("publisher connected to %s as %s", address.url, self._client_id)
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

    async def publish_many(self, messages: Sequence[tuple[str, bytes]], *, qos: int,
                           retain: bool) -> list[int]:
        """Publish ``(topic, payload)`` pairs pipelined, ``PIPELINE`` awaiting their
        PUBACK at once; returns the indexes of those the broker did not take (after one
        reconnect and a second try of just those)."""
        todo = list(range(len(messages)))
        async with self._lock:
            for attempt in (1, 2):
                try:
                    client = await self._connect()
                except aiomqtt.MqttError as err:
                    await self._drop()
                    logger.info("publisher: %s (try %d of a batch of %d)", err, attempt,
                                len(todo))
                    continue
                failed: list[int] = []
                for start in range(0, len(todo), PIPELINE):
                    chunk = todo[start:start + PIPELINE]
                    results = await asyncio.gather(
                        *(client.publish(messages[i][0], messages[i][1], qos=qos,
                                         retain=retain) for i in chunk),
                        return_exceptions=True)
                    for i, result in zip(chunk, results, strict=True):
                        if isinstance(result, aiomqtt.MqttError):
                            failed.append(i)
                        elif isinstance(result, BaseException):
                            raise result
                if not failed:
                    return []
                logger.info("publisher: %d of %d not taken (try %d); reconnecting",
                            len(failed), len(todo), attempt)
                await self._drop()
                todo = failed
        return todo

    async def _drop(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                await stack.aclose()

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()
