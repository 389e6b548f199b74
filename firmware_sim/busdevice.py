"""The session every simulated device on the store-local bus shares.

A device connects with a retained last-will ``state`` (offline), subscribes to its one
``down`` topic, says it is online (retained), hands each message it receives to
``on_message`` and, with ``autostep``, calls ``step()`` every ``tick_s``. ``aclose``
says offline (best effort) and disconnects. Subclasses supply the protocol: what the
device does with a message and what a step publishes (``publish_up``).
"""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt

from firmware_sim.mqtturl import bus_address
from protocols import encode, topics
from protocols.messages import DeviceState


class BusDeviceSim:
    """Base class: set ``kind``, ``model`` and ``down_type``; implement the two hooks."""

    kind: str  # the local-bus device kind, e.g. "esl"
    model: str  # reported in the device state, e.g. "sim-esl-ap"
    down_type: str  # the down-topic type the device listens to
    more_down_types: tuple[str, ...] = ()  # others, handed to ``on_down`` (e.g. firmware)
    fw = "1.0.0"
    max_queued_in = 1_000  # messages held unread before paho drops them (bounded memory)

    def __init__(self, bus_url: str, device_id: str) -> None:
        self.bus = bus_address(bus_url)
        self.device_id = device_id
        self._client: aiomqtt.Client | None = None
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []

    # ---- hooks ------------------------------------------------------------------------

    async def on_message(self, payload: bytes) -> None:
        """One message on the device's down topic (raw bytes; validate before use)."""
        raise NotImplementedError

    async def on_down(self, type_: str, payload: bytes) -> None:
        """A message on one of ``more_down_types`` (raw bytes; validate before use)."""
        raise NotImplementedError

    async def step(self) -> object:
        """Periodic work (heartbeats, scheduled check-ins); the clock decides what is due."""
        raise NotImplementedError

    def now_ms(self) -> int:
        raise NotImplementedError

    # ---- session ----------------------------------------------------------------------

    def topic(self, direction: topics.LocalDirection, type_: str) -> str:
        return topics.local(self.kind, self.device_id, direction, type_)

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def publish_up(self, type_: str, payload: bytes, *, retain: bool = False) -> None:
        assert self._client is not None, "start() the simulator first"
        await self._client.publish(self.topic("up", type_), payload, qos=1, retain=retain)

    async def start(self, *, autostep: bool = True, tick_s: float = 1.0) -> None:
        offline = encode(DeviceState(online=False, model=self.model, fw=self.fw))
        self._client = await self._stack.enter_async_context(aiomqtt.Client(
            **self.bus.client_options(), identifier=f"sim-{self.kind}-{self.device_id}",
            will=aiomqtt.Will(self.topic("up", "state"), offline, qos=1, retain=True),
            max_queued_incoming_messages=self.max_queued_in, keepalive=10,
        ))
        for type_ in (self.down_type, *self.more_down_types):
            await self._client.subscribe(self.topic("down", type_), qos=1)
        online = DeviceState(online=True, model=self.model, fw=self.fw, ts=self.now_ms())
        await self.publish_up("state", encode(online), retain=True)
        name = f"{self.kind}-sim-{self.device_id}"
        self._tasks.append(asyncio.create_task(self._receive(), name=f"{name}-rx"))
        if autostep:
            self._tasks.append(asyncio.create_task(self._autostep(tick_s), name=f"{name}-step"))

    async def aclose(self) -> None:
        # aiomqtt's publish awaits its PUBACK with asyncio.wait_for, and 3.11's wait_for
        # can swallow a cancellation that races with the PUBACK: the task then runs on.
        # Cancel again until every task has ended (a device answering every message,
        # such as the ESL bootloader, hit it about once in a dozen runs).
        pending = set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        self._tasks.clear()
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                offline = DeviceState(online=False, model=self.model, ts=self.now_ms())
                await self.publish_up("state", encode(offline), retain=True)
        await self._stack.aclose()
        self._client = None

    async def _autostep(self, tick_s: float) -> None:
        while True:
            await self.step()
            await asyncio.sleep(tick_s)

    async def _receive(self) -> None:
        assert self._client is not None
        async for message in self._client.messages:
            payload = message.payload
            raw = (bytes(payload) if isinstance(payload, bytes | bytearray)
                   else str(payload).encode())
            type_ = str(message.topic).rsplit("/", 1)[-1]
            if type_ != self.down_type and type_ in self.more_down_types:
                await self.on_down(type_, raw)
            else:
                await self.on_message(raw)
