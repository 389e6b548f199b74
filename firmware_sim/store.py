"""A simulated store: N generic devices on the store-local bus producing events.

The simulator is the ground truth for "nothing lost" tests and the demo: every
event id a device got acknowledged by the bus is recorded (in memory and, with
``ledger``, one id per line in a file that survives the simulator).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from firmware_sim.generic import DeviceSpec, GenericDevice
from firmware_sim.mqtturl import MqttUrl
from protocols.clock import Clock, SystemClock

logger = logging.getLogger(__name__)

# Device kinds of the generic simulator; the device-specific simulators
# (carts, labels, printers ...) replace these family by family.
GENERIC_KINDS = ("sensor", "cart", "esl_ap", "audio", "vending", "pos")

# (event kind, relative weight): mostly device events, some retail activity.
_EVENT_MIX = (("device_event", 6), ("sale", 2), ("member_visit", 1), ("vend", 1))


@dataclass
class StoreSimulator:
    bus_url: str
    store_id: str = "S001"
    devices: int = 6
    rate: float = 20.0  # events per second for the whole store; 0 = as fast as possible
    max_events: int | None = None
    tele_interval_s: float = 5.0
    ledger: Path | None = None
    seed: int = 7
    clock: Clock = field(default_factory=SystemClock)
    produced_ids: list[str] = field(default_factory=list)
    queued: int = 0

    def specs(self) -> list[DeviceSpec]:
        return [
            DeviceSpec(device_id=f"{self.store_id}-{kind}-{i:02d}", kind=kind)
            for i, kind in ((i, GENERIC_KINDS[i % len(GENERIC_KINDS)]) for i in range(self.devices))
        ]

    @property
    def produced(self) -> int:
        return len(self.produced_ids)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set or ``max_events`` were produced and acknowledged."""
        bus = MqttUrl.parse(self.bus_url)
        rng = random.Random(self.seed)
        ledger: IO[str] | None = None
        if self.ledger is not None:
            self.ledger.parent.mkdir(parents=True, exist_ok=True)
            ledger = self.ledger.open("a", buffering=1)

        def produced(event_id: str) -> None:
            self.produced_ids.append(event_id)
            if ledger is not None:
                ledger.write(event_id + "\n")

        devices = [
            GenericDevice(spec=spec, bus=bus, clock=self.clock, tele_interval_s=self.tele_interval_s,
                          on_produced=produced, rng=random.Random(rng.random()))
            for spec in self.specs()
        ]
        queues: list[asyncio.Queue[tuple[str, dict[str, object]]]] = [
            asyncio.Queue(maxsize=1000) for _ in devices
        ]
        device_stop = asyncio.Event()
        tasks = [
            asyncio.create_task(dev.run(q, device_stop), name=f"sim-{dev.spec.device_id}")
            for dev, q in zip(devices, queues, strict=True)
        ]
        try:
            await self._generate(queues, rng, stop, tasks)
        finally:
            device_stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for dev, res in zip(devices, results, strict=True):
                if isinstance(res, BaseException) and not isinstance(res, asyncio.CancelledError):
                    logger.warning("device %s ended with %r", dev.spec.device_id, res)
            if ledger is not None:
                ledger.close()

    async def _generate(
        self,
        queues: list[asyncio.Queue[tuple[str, dict[str, object]]]],
        rng: random.Random,
        stop: asyncio.Event,
        tasks: list[asyncio.Task[None]],
    ) -> None:
        kinds = [k for k, _ in _EVENT_MIX]
        weights = [w for _, w in _EVENT_MIX]
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set() and (self.max_events is None or self.queued < self.max_events):
            if any(t.done() for t in tasks):
                raise RuntimeError("a simulated device stopped unexpectedly") from next(
                    (t.exception() for t in tasks if t.done() and not t.cancelled()), None
                )
            kind = rng.choices(kinds, weights)[0]
            data: dict[str, object] = {"n": self.queued}
            if kind == "sale":
                data |= {"total_minor": rng.randint(100, 50_000), "currency": "CNY"}
            elif kind == "vend":
                data |= {"slot": rng.randint(1, 40), "price_minor": rng.randint(300, 1500)}
            await queues[self.queued % len(queues)].put((kind, data))
            self.queued += 1
            if interval:
                next_at += interval
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif self.queued % 200 == 0:
                await asyncio.sleep(0)
        # Let devices drain their queues before the caller stops them.
        while any(not q.empty() for q in queues) and not all(t.done() for t in tasks):
            await asyncio.sleep(0.05)
