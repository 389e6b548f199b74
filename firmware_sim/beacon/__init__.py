"""Simulated BLE beacons as heard by the store box's scanner.

There is no radio here, so the "air" is a JSONL file of advertisements in the format
the agent's replay backend reads (``{"t", "address", "rssi", "adv"}``): the real
iBeacon / Eddystone bytes (``protocols.ble``), RSSI from the layout's path-loss model
at the scanner's position. ``BeaconRadio.run`` appends live (the agent follows the
file like ``tail -f``); ``write_recording`` produces a fixed recording.

Beacons listed in ``dead_after`` stop advertising at that time (a flat battery),
which is how the silence alarm is exercised.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from firmware_sim.layouts import BeaconAnchor, Layout, Point, rssi_at
from protocols import ble

TLM_EVERY = 10  # Eddystone beacons interleave one TLM frame per this many UID frames
_FULL_BATTERY_MV = 3000  # a CR2477 coin cell, new
_DRAIN_MV_PER_S = 0.01  # simulated drain; visible over a long demo, harmless in tests


def advert_records(
    layout: Layout,
    *,
    duration_s: float,
    rng: random.Random,
    receiver: Point | None = None,
    dead_after: dict[str, float] | None = None,
    start_s: float = 0.0,
) -> Iterator[dict[str, object]]:
    """Every advertisement heard in ``[start_s, start_s + duration_s)``, in time order."""
    where = receiver or layout.scanner
    dead_after = dead_after or {}
    schedule: list[tuple[float, int, BeaconAnchor]] = []
    for i, beacon in enumerate(layout.beacons):
        # Each beacon starts at its own phase so the adverts interleave as in a real store.
        t = start_s + rng.uniform(0, beacon.interval_s)
        while t < start_s + duration_s:
            schedule.append((t, i, beacon))
            t += beacon.interval_s
    schedule.sort(key=lambda item: (item[0], item[1]))
    counts: dict[str, int] = {}
    for t, _, beacon in schedule:
        if t >= dead_after.get(beacon.id, float("inf")):
            continue
        rssi = rssi_at(beacon, where, rng)
        if rssi is None:
            continue
        n = counts[beacon.id] = counts.get(beacon.id, 0) + 1
        adv = beacon.advertisement()
        if beacon.kind == "eddystone" and n % TLM_EVERY == 0:
            adv = ble.eddystone_tlm_adv(
                battery_mv=max(0, round(_FULL_BATTERY_MV - _DRAIN_MV_PER_S * t)),
                temperature_c=round(21.0 + rng.gauss(0, 0.3), 2),
                adv_count=n,
                uptime_ds=int(t * 10),
            )
        yield {"t": round(t, 3), "address": beacon.address, "rssi": rssi, "adv": adv.hex()}


def write_recording(layout: Layout, path: Path, *, duration_s: float, seed: int = 7,
                    dead_after: dict[str, float] | None = None) -> int:
    rng = random.Random(seed)
    lines = [json.dumps(r) for r in advert_records(layout, duration_s=duration_s, rng=rng,
                                                   dead_after=dead_after)]
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


@dataclass
class BeaconRadio:
    """Appends live advertisements to ``path`` once per second of wall time."""

    layout: Layout
    path: Path
    seed: int = 11
    dead_after: dict[str, float] = field(default_factory=dict)
    written: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        rng = random.Random(self.seed)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        started = loop.time()
        second = 0
        while not stop.is_set():
            records = list(advert_records(self.layout, duration_s=1.0, rng=rng,
                                          dead_after=self.dead_after, start_s=float(second)))
            text = "".join(json.dumps(r) + "\n" for r in records)
            # Appending in a thread: the file is the simulated air, not worth a stall.
            await asyncio.to_thread(_append, self.path, text)
            self.written += len(records)
            second += 1
            delay = started + second - loop.time()
            if delay > 0:
                try:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                    # cancellation that races with completion (the task then never stops).
                    async with asyncio.timeout(delay):
                        await stop.wait()
                except TimeoutError:
                    pass


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)
