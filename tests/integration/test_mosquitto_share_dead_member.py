"""What Mosquitto does with a share group member that died (decision 0056).

MQTT 5 (4.8.2) lets a broker keep a QoS 1 message in flight to a member whose
connection broke for that member's return, and says it SHOULD send it to another member
once that member's session ends. Mosquitto 2.0.11 (and the 2.0/2.1 source, as of
2026-12) does neither handover: ``subs__shared_process`` in ``src/subs.c`` gives each
message to the group's next member in turn whether it is connected or not, and what a
dead member's persistent session holds (in flight, unacknowledged, or queued) stays
there until the same client id resumes the session or is thrown away with it
(eclipse/mosquitto#2662, open). Pinned here so that a broker that hands over fails this
test, and the orchestration that ingest relies on after a worker's crash (end the dead
worker's session; the stores re-send, decision 0028) can be revisited.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

SHARE = "$share/ingest/"


def _doomed_member(broker: Mosquitto, topic: str, *, received: list[bytes],
                   got_some: threading.Event) -> paho.Client:
    """A member that takes messages and never acknowledges them (a worker whose batch
    has not committed yet)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="worker-a",
                         clean_session=False, manual_ack=True)

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        received.append(bytes(msg.payload))
        got_some.set()

    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.subscribe(SHARE + topic, qos=1)
    client.loop_start()
    return client


def _kill(client: paho.Client) -> None:
    """Drop the connection as ``kill -9`` does: no DISCONNECT, no PUBACK."""
    client.loop_stop()
    sock = client.socket()
    assert sock is not None
    sock.close()


async def _drain(client: aiomqtt.Client, wait_s: float = 1.5) -> list[bytes]:
    got: list[bytes] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait_s):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                got.append(message.payload)
    return got


async def test_a_dead_members_messages_stay_with_its_session(mosquitto: Mosquitto) -> None:
    topic = f"t/{uuid.uuid4().hex}"
    a_got: list[bytes] = []
    a_has = threading.Event()

    def connect(identifier: str, *, clean: bool = False) -> aiomqtt.Client:
        return aiomqtt.Client(mosquitto.host, mosquitto.port, identifier=identifier,
                              clean_session=clean)

    async with connect("worker-b") as b, connect("store") as store:
        await b.subscribe(SHARE + topic, qos=1)
        a = await asyncio.to_thread(_doomed_member, mosquitto, topic, received=a_got,
                                    got_some=a_has)
        await asyncio.sleep(0.3)  # a's SUBACK: both are members now
        for i in range(10):
            await store.publish(topic, f"live-{i}".encode(), qos=1)
        assert await asyncio.to_thread(a_has.wait, 5)
        b_live = await _drain(b)
        await asyncio.sleep(0.2)
        in_flight = list(a_got)  # taken by a, never acknowledged
        assert len(in_flight) + len(b_live) == 10 and in_flight, (in_flight, b_live)
        await asyncio.to_thread(_kill, a)

        # 1. What a held in flight is not handed to b.
        assert await _drain(b, 2.0) == []
        # 2. The dead member keeps its turn: b gets every other new message.
        for i in range(10):
            await store.publish(topic, f"after-{i}".encode(), qos=1)
        assert len(await _drain(b)) == 5
        # 3. Once a's session is ended, b gets everything new; what a's session held
        #    (its in-flight messages and its turns) is gone with it.
        async with connect("worker-a", clean=True):
            pass
        for i in range(10):
            await store.publish(topic, f"reaped-{i}".encode(), qos=1)
        got = await _drain(b)
        assert sorted(got) == sorted(f"reaped-{i}".encode() for i in range(10)), got
    # 4. ... and nothing waits for worker-a any more: a new session under its id has no
    #    subscription and no messages (had it resumed before step 3, it would have got
    #    its in-flight messages again and its turns).
    async with connect("worker-a") as again:
        assert await _drain(again) == []
