"""Mosquitto's file persistence keeps a persistent client's plain subscription over a
restart and loses its ``$share`` one (decisions 0010 and 0053).

The cause is ``persist__subs_save`` in ``src/persist_write.c``, which writes a topic's
plain subscribers and not its shared ones; the code is the same in 2.0.22 and 2.1.2, and
both lose the subscription like Debian's 2.0.11 (measured in 0053). Only 2.1's
``persist-sqlite`` plugin keeps it. Pinned here so that a Mosquitto that fixes it fails
this test, and the workarounds for it (ingest's ``ready`` handshake, 0012) can be
revisited.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import aiomqtt
import pytest

from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


async def _collect(client: aiomqtt.Client, wait_s: float = 1.5) -> list[bytes]:
    got: list[bytes] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait_s):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                got.append(message.payload)
    return got


@pytest.mark.parametrize(("shared", "restart", "kept"), [
    (False, True, True),    # a plain subscription outlives the restart
    (True, False, True),    # a shared one outlives a reconnect (fixed in 2.0.12)
    (True, True, False),    # ... and not a restart
], ids=["plain-restart", "shared-reconnect", "shared-restart"])
async def test_a_persistent_sessions_subscription_over_a_restart(
        mosquitto: Mosquitto, shared: bool, restart: bool, kept: bool) -> None:
    topic = f"t/{uuid.uuid4().hex}"
    filter_ = f"$share/ingest/{topic}" if shared else topic

    def connect(identifier: str) -> aiomqtt.Client:
        return aiomqtt.Client(mosquitto.host, mosquitto.port, identifier=identifier,
                              clean_session=False)

    async with connect("worker") as worker:
        await worker.subscribe(filter_, qos=1)
    if restart:
        await asyncio.to_thread(mosquitto.restart)  # SIGTERM: the broker saves its state
    async with connect("store") as store:
        await store.publish(topic, b"while away", qos=1)
    async with connect("worker") as worker:  # the session's own subscription, no new one
        async with connect("store") as store:
            await store.publish(topic, b"after", qos=1)
        got = await _collect(worker)

    assert got == ([b"while away", b"after"] if kept else []), got
