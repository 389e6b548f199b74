"""A simulated shopper pushing a cart around a store layout.

The shopper walks in straight lines at ``speed_mps`` between waypoints (the entrance,
shelves, the checkout), so the BLE readings the cart reports drift smoothly from one
beacon to the next, as a positioning model would see them in a real store.

Two radio models: the simple log-distance one of ``firmware_sim.layouts`` (the default),
or, with ``radio_env_seed``, the site model of ``firmware_sim.rf`` (per-anchor path loss,
static shadowing fixed by the store's environment seed, the shopper's body blocking
anchors behind them): the one a site survey of the store records, so a positioning
model trained on that survey meets the same radio on the live carts.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from firmware_sim import rf
from firmware_sim.layouts import Layout, Point, Shelf, distance, rssi_at

MAX_READINGS = 8  # strongest beacons per scan report: a tablet's BLE stack caps its list


@dataclass
class Walker:
    layout: Layout
    rng: random.Random
    speed_mps: float = 1.0
    pos: Point = (0.0, 0.0)
    radio_env_seed: int | None = None  # None: the simple model; else firmware_sim.rf's
    _target: Point | None = field(default=None, repr=False)
    _heading: float | None = field(default=None, repr=False)  # the way the shopper faces

    def __post_init__(self) -> None:
        self.pos = self.layout.entrance

    def go_to(self, target: Point) -> None:
        self._target = target

    def go_to_shelf(self) -> Shelf:
        shelf = self.rng.choice(self.layout.shelves)
        # Stand in front of the shelf, not inside it: half a metre off, jittered.
        x = shelf.pos[0] + self.rng.uniform(-0.5, 0.5)
        y = shelf.pos[1] + self.rng.uniform(-0.5, 0.5)
        self.go_to((min(self.layout.width_m, max(0.0, x)), min(self.layout.height_m, max(0.0, y))))
        return shelf

    @property
    def arrived(self) -> bool:
        return self._target is None

    def step(self, dt_s: float) -> None:
        if self._target is None:
            return
        remaining = distance(self.pos, self._target)
        stride = self.speed_mps * dt_s
        if remaining <= stride:
            self.pos, self._target = self._target, None
            return
        f = stride / remaining
        self._heading = math.atan2(self._target[1] - self.pos[1], self._target[0] - self.pos[0])
        self.pos = (self.pos[0] + (self._target[0] - self.pos[0]) * f,
                    self.pos[1] + (self._target[1] - self.pos[1]) * f)

    def readings(self) -> list[tuple[str, int]]:
        if self.radio_env_seed is not None:
            scan = rf.rssi_samples({b.key: b.pos for b in self.layout.beacons}, self.pos,
                                   rng=self.rng, heading=self._heading,
                                   env_seed=self.radio_env_seed)
            site = sorted(((k, round(v)) for k, v in scan.items() if v is not None),
                          key=lambda kr: -kr[1])
            return site[:MAX_READINGS]
        heard = []
        for beacon in self.layout.beacons:
            rssi = rssi_at(beacon, self.pos, self.rng)
            if rssi is not None:
                heard.append((beacon.key, rssi))
        heard.sort(key=lambda kr: -kr[1])
        return heard[:MAX_READINGS]
