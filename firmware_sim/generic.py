"""A generic device on the store-local bus: retained state with a Last Will,
telemetry at an interval, and business events handed to it by the store simulator.

Wire format (``protocols.topics.local``): ``store/{kind}/{device_id}/up/{state|tele|evt}``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import aiomqtt

from firmware_sim.mqtturl import MqttUrl
from protocols import encode, topics
from protocols.clock import Clock, SystemClock
from protocols.ids import uuid7
from protocols.messages import DeviceEvent, DeviceState, Sample, Telemetry

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    device_id: str
    kind: str
    model: str = "sim-generic"
    fw: str = "1.0.0"


@dataclass
class GenericDevice:
    """One simulated device with its own MQTT connection to the store-local bus."""

    spec: DeviceSpec
    bus: MqttUrl
    clock: Clock = field(default_factory=SystemClock)
    tele_interval_s: float = 5.0
    window: int = 50  # QoS 1 publishes in flight per device
    on_produced: Callable[[str], None] | None = None
    rng: random.Random = field(default_factory=random.Random)
    produced: int = 0

    def _topic(self, type_: str) -> str:
        return topics.local(self.spec.kind, self.spec.device_id, "up", type_)

    def _state(self, *, online: bool) -> bytes:
        state = DeviceState(
            online=online, model=self.spec.model, fw=self.spec.fw, ts=self.clock.now_ms()
        )
        return encode(state)

    async def run(
        self, events: asyncio.Queue[tuple[str, dict[str, object]]], stop: asyncio.Event
    ) -> None:
        will = aiomqtt.Will(self._topic("state"), self._state(online=False), qos=1, retain=True)
        async with aiomqtt.Client(
            self.bus.host,
            self.bus.port,
            username=self.bus.username,
            password=self.bus.password,
            identifier=f"sim-{self.spec.kind}-{self.spec.device_id}",
            will=will,
            keepalive=10,
        ) as client:
            await client.publish(self._topic("state"), self._state(online=True), qos=1, retain=True)
            tele = asyncio.create_task(
                self._telemetry(client, stop), name=f"tele-{self.spec.device_id}"
            )
            try:
                await self._events(client, events, stop)
            finally:
                tele.cancel()
                await asyncio.gather(tele, return_exceptions=True)
                await client.publish(
                    self._topic("state"), self._state(online=False), qos=1, retain=True
                )

    async def _events(
        self, client: aiomqtt.Client, events: asyncio.Queue[tuple[str, dict[str, object]]],
        stop: asyncio.Event,
    ) -> None:
        slots = asyncio.Semaphore(self.window)
        pending: set[asyncio.Task[None]] = set()

        async def send(kind: str, data: dict[str, object]) -> None:
            try:
                now = self.clock.now_ms()
                event = DeviceEvent(id=uuid7(now), kind=kind, ts=now, data=data)
                # A device counts an event as produced once the bus has acknowledged it.
                await client.publish(self._topic("evt"), encode(event), qos=1)
                self.produced += 1
                if self.on_produced is not None:
                    self.on_produced(event.id)
            finally:
                slots.release()

        while not (stop.is_set() and events.empty()):
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                # cancellation that races with completion (the task then never stops).
                async with asyncio.timeout(0.2):
                    kind, data = await events.get()
            except TimeoutError:
                continue
            await slots.acquire()
            task = asyncio.create_task(send(kind, data), name=f"evt-{self.spec.device_id}")
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)

    async def _telemetry(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        battery = 100.0
        while not stop.is_set():
            battery = max(0.0, battery - self.rng.uniform(0.0, 0.05))
            msg = Telemetry(
                device_id=self.spec.device_id,
                device_kind=self.spec.kind,
                samples=[
                    Sample(
                        ts=self.clock.now_ms(),
                        values={
                            "battery_pct": round(battery, 2),
                            "temperature_c": round(self.rng.gauss(21.0, 0.5), 2),
                            "rssi_dbm": self.rng.randint(-80, -40),
                        },
                    )
                ],
            )
            await client.publish(self._topic("tele"), encode(msg), qos=0)
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                # cancellation that races with completion (the task then never stops).
                async with asyncio.timeout(self.tele_interval_s):
                    await stop.wait()
            except TimeoutError:
                pass
