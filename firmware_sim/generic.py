"""A generic device on the store-local bus: retained state with a Last Will,
telemetry at an interval, and a sensor reading as a ``device_event`` each time the store
simulator hands it a turn.

Generic devices are plain sensors: a door contact opens and closes, a footfall counter
counts people in and out, probes and environment sensors report temperature (and
humidity). They never produce business events (``sale``, ``vend``, ``member_visit`` ...):
those come only from the devices that do business, the till, the carts and the vending
cabinet, through their own drivers.

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


# The one event kind a generic device publishes: its readings are device events.
READING_KIND = "device_event"

# Typical values per kind (mean, standard deviation): a chilled display cabinet holds
# 2-5 degC, a sales floor about 21 degC at 35-55 % relative humidity.
_AMBIENT_C = (21.0, 0.5)
_CHILLED_C = (4.0, 0.4)
_HUMIDITY_PCT = (45.0, 3.0)
_FOOTFALL_PER_READING = 3  # people through the entrance between two readings, at most


@dataclass
class SensorModel:
    """What a generic device of ``kind`` measures; it keeps the state a reading depends
    on (a door is open until it is closed)."""

    kind: str
    rng: random.Random
    door_open: bool = False

    def temperature_c(self) -> float:
        mean, sd = _CHILLED_C if self.kind == "fridge_probe" else _AMBIENT_C
        return round(self.rng.gauss(mean, sd), 2)

    def reading(self) -> dict[str, object]:
        """The payload of the next ``device_event`` this sensor publishes."""
        if self.kind == "door_contact":
            self.door_open = not self.door_open
            return {"reading": "door", "state": "open" if self.door_open else "closed"}
        if self.kind == "footfall":
            return {"reading": "footfall",
                    "entered": self.rng.randint(0, _FOOTFALL_PER_READING),
                    "exited": self.rng.randint(0, _FOOTFALL_PER_READING)}
        if self.kind == "env_sensor":
            return {"reading": "environment", "temperature_c": self.temperature_c(),
                    "humidity_pct": round(self.rng.gauss(*_HUMIDITY_PCT), 1)}
        if self.kind == "gateway":
            # a radio gateway reports the signal of its backhaul link
            return {"reading": "link", "rssi_dbm": self.rng.randint(-80, -40)}
        return {"reading": "temperature", "temperature_c": self.temperature_c()}


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
    sensor: SensorModel = field(init=False)

    def __post_init__(self) -> None:
        self.sensor = SensorModel(self.spec.kind, self.rng)

    def _topic(self, type_: str) -> str:
        return topics.local(self.spec.kind, self.spec.device_id, "up", type_)

    def _state(self, *, online: bool) -> bytes:
        state = DeviceState(
            online=online, model=self.spec.model, fw=self.spec.fw, ts=self.clock.now_ms()
        )
        return encode(state)

    async def run(self, turns: asyncio.Queue[int], stop: asyncio.Event) -> None:
        """Publish one reading per turn taken from ``turns`` (the store's event number)."""
        will = aiomqtt.Will(self._topic("state"), self._state(online=False), qos=1, retain=True)
        async with aiomqtt.Client(
            **self.bus.client_options(),
            identifier=f"sim-{self.spec.kind}-{self.spec.device_id}",
            will=will,
            keepalive=10,
        ) as client:
            await client.publish(self._topic("state"), self._state(online=True), qos=1, retain=True)
            tele = asyncio.create_task(
                self._telemetry(client, stop), name=f"tele-{self.spec.device_id}"
            )
            try:
                await self._events(client, turns, stop)
            finally:
                tele.cancel()
                await asyncio.gather(tele, return_exceptions=True)
                await client.publish(
                    self._topic("state"), self._state(online=False), qos=1, retain=True
                )

    async def _events(
        self, client: aiomqtt.Client, turns: asyncio.Queue[int], stop: asyncio.Event
    ) -> None:
        slots = asyncio.Semaphore(self.window)
        pending: set[asyncio.Task[None]] = set()

        async def send(data: dict[str, object]) -> None:
            try:
                now = self.clock.now_ms()
                event = DeviceEvent(id=uuid7(now), kind=READING_KIND, ts=now, data=data)
                # A device counts an event as produced once the bus has acknowledged it.
                await client.publish(self._topic("evt"), encode(event), qos=1)
                self.produced += 1
                if self.on_produced is not None:
                    self.on_produced(event.id)
            finally:
                slots.release()

        while not (stop.is_set() and turns.empty()):
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                # cancellation that races with completion (the task then never stops).
                async with asyncio.timeout(0.2):
                    n = await turns.get()
            except TimeoutError:
                continue
            await slots.acquire()
            # the reading is taken in turn order, so a door's open/close alternate on the wire
            data = {"n": n, **self.sensor.reading()}
            task = asyncio.create_task(send(data), name=f"evt-{self.spec.device_id}")
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
                            "temperature_c": self.sensor.temperature_c(),
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
