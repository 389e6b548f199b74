"""Simulated BLE RSSI in a store: pure functions, seeded, no I/O except ``write_csv``.

    rng = random.Random(7)
    rssi_samples(anchors, (3.0, 4.0), rng=rng)      # {"a1": -71.3, "a2": None, ...}
    rows = survey(anchors, lawnmower((0, 0, 20, 12), spacing=1.5), rng=rng)
    rows = track(anchors, walk_path, rng=rng)         # a shopper pushing a cart
    write_csv("survey.csv", rows, anchor_ids=list(anchors))

Model per anchor (fixed by ``env_seed`` and the anchor id, so a survey and a later live
track see the same store): log-distance path loss with an exponent in [1.5, 3.1]
(1.5-2: line of sight down an aisle, 3: through shelving), log-normal shadowing of 5-8 dB
std split between a static, spatially correlated part (shelves and fixtures: the same at
the same spot every time, which is what a fingerprint learns) and a per-scan part
(people, multipath fading), body blocking when the shopper stands between tag and
anchor, and missed scans that grow more likely near the receiver's sensitivity.
"""

from __future__ import annotations

import csv
import itertools
import math
import random
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Point = tuple[float, float]
AnchorPos = tuple[float, float] | tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class RfParams:
    # typical BLE beacon at 0 dBm transmit power, measured at 1 m by a phone-class receiver
    power_1m_dbm: float = -59.0
    exponent_range: tuple[float, float] = (1.5, 3.1)
    shadow_std_range: tuple[float, float] = (5.0, 8.0)
    # 70 % of the shadowing variance is static (furniture), 30 % changes scan to scan
    static_share: float = 0.7
    # static shadowing decorrelates over about 2 m (shelf run / aisle width)
    correlation_m: float = 2.0
    # a human torso between tag and anchor costs 5-10 dB at 2.4 GHz
    body_loss_db: float = 7.0
    # tag on the cart handle, 1 m above the floor
    tag_height_m: float = 1.0
    # phone-grade receivers hear nothing below about -100 dBm
    sensitivity_dbm: float = -100.0
    # scans lost even with a strong signal (advertising channel collisions, scan gaps)
    base_miss: float = 0.05
    # within this margin above the sensitivity, misses rise linearly to certain
    fade_margin_db: float = 10.0


@dataclass(frozen=True, slots=True)
class AnchorRadio:
    """The fixed radio character of one anchor in one simulated store."""

    exponent: float
    shadow_std: float
    # static shadowing field: a sum of random plane waves, zero mean, unit variance
    waves: tuple[tuple[float, float, float], ...]  # (kx, ky, phase)

    def static_shadow(self, p: Point) -> float:
        s = sum(math.cos(kx * p[0] + ky * p[1] + ph) for kx, ky, ph in self.waves)
        return s * math.sqrt(2.0 / len(self.waves))


def anchor_radio(
    anchor_id: str, *, env_seed: int = 0, params: RfParams | None = None
) -> AnchorRadio:
    prm = params or RfParams()
    r = random.Random(zlib.crc32(f"{env_seed}:{anchor_id}".encode()))
    waves = []
    for _ in range(16):
        # wave numbers for a Gaussian-like correlation of length correlation_m
        kx, ky = r.gauss(0, 1 / prm.correlation_m), r.gauss(0, 1 / prm.correlation_m)
        waves.append((kx, ky, r.uniform(0, 2 * math.pi)))
    return AnchorRadio(
        exponent=r.uniform(*prm.exponent_range),
        shadow_std=r.uniform(*prm.shadow_std_range),
        waves=tuple(waves),
    )


def mean_rssi(distance_m: float, *, exponent: float, params: RfParams | None = None) -> float:
    prm = params or RfParams()
    return prm.power_1m_dbm - 10.0 * exponent * math.log10(max(distance_m, 0.1))


def _body_blocked(pos: Point, heading: float | None, anchor: Point) -> bool:
    """The shopper walks behind the cart, so the body blocks anchors behind them: more
    than 120 degrees off the heading."""
    if heading is None:
        return False
    bearing = math.atan2(anchor[1] - pos[1], anchor[0] - pos[0])
    off = abs((bearing - heading + math.pi) % (2 * math.pi) - math.pi)
    return off > math.radians(120)


def rssi_samples(
    anchors: Mapping[str, AnchorPos],
    position: Point,
    *,
    rng: random.Random,
    heading: float | None = None,
    env_seed: int = 0,
    params: RfParams | None = None,
) -> dict[str, float | None]:
    """One scan window at ``position``: RSSI in dBm per anchor, None where missed.
    ``heading`` (radians) turns on body blocking; None = no body (a survey robot)."""
    prm = params or RfParams()
    out: dict[str, float | None] = {}
    for aid, pos in anchors.items():
        radio = anchor_radio(aid, env_seed=env_seed, params=prm)
        az = pos[2] if len(pos) == 3 else 2.5  # type: ignore[misc]  # ceiling mount
        d = math.dist((position[0], position[1], prm.tag_height_m), (pos[0], pos[1], az))
        static = radio.static_shadow(position) * radio.shadow_std * math.sqrt(prm.static_share)
        dynamic = rng.gauss(0.0, radio.shadow_std * math.sqrt(1.0 - prm.static_share))
        rssi = mean_rssi(d, exponent=radio.exponent, params=prm) + static + dynamic
        if _body_blocked(position, heading, (pos[0], pos[1])):
            rssi -= prm.body_loss_db
        margin = rssi - prm.sensitivity_dbm
        p_miss = prm.base_miss + (1 - prm.base_miss) * min(
            1.0, max(0.0, 1 - margin / prm.fade_margin_db)
        )
        out[aid] = None if rng.random() < p_miss else round(rssi, 1)
    return out


def lawnmower(rect: tuple[float, float, float, float], *, spacing: float = 1.0) -> list[Point]:
    """Back-and-forth survey waypoints covering ``rect`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = rect
    pts: list[Point] = []
    n = max(1, int((y1 - y0) / spacing))
    for i in range(n + 1):
        y = y0 + i * (y1 - y0) / n
        pts.extend([(x0, y), (x1, y)] if i % 2 == 0 else [(x1, y), (x0, y)])
    return pts


def _walk(
    anchors: Mapping[str, AnchorPos],
    waypoints: Sequence[Point],
    *,
    rng: random.Random,
    speed: float,
    rate_hz: float,
    t0: float,
    body: bool,
    env_seed: int,
    params: RfParams | None,
) -> list[dict[str, float | None]]:
    rows: list[dict[str, float | None]] = []
    t = t0
    dt = 1.0 / rate_hz
    for a, b in itertools.pairwise(waypoints):
        seg = math.dist(a, b)
        heading = math.atan2(b[1] - a[1], b[0] - a[0])
        steps = max(1, int(seg / (speed * dt)))
        for k in range(steps):
            f = k / steps
            p = (a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]))
            scan = rssi_samples(
                anchors,
                p,
                rng=rng,
                heading=heading if body else None,
                env_seed=env_seed,
                params=params,
            )
            rows.append({"ts": round(t, 3), "x": round(p[0], 3), "y": round(p[1], 3), **scan})
            t += dt
    return rows


def survey(
    anchors: Mapping[str, AnchorPos],
    waypoints: Sequence[Point],
    *,
    rng: random.Random,
    speed: float = 0.3,
    rate_hz: float = 3.0,
    t0: float = 0.0,
    env_seed: int = 0,
    params: RfParams | None = None,
) -> list[dict[str, float | None]]:
    """A site survey: a slow robot (no body in the way) along ``waypoints``, one row per
    scan window: ``{"ts", "x", "y", <anchor id>: rssi | None}``."""
    return _walk(
        anchors,
        waypoints,
        rng=rng,
        speed=speed,
        rate_hz=rate_hz,
        t0=t0,
        body=False,
        env_seed=env_seed,
        params=params,
    )


def track(
    anchors: Mapping[str, AnchorPos],
    waypoints: Sequence[Point],
    *,
    rng: random.Random,
    speed: float = 1.0,
    rate_hz: float = 3.0,
    t0: float = 0.0,
    env_seed: int = 0,
    params: RfParams | None = None,
) -> list[dict[str, float | None]]:
    """A live cart track: a shopper at walking pace, their body blocking anchors behind."""
    return _walk(
        anchors,
        waypoints,
        rng=rng,
        speed=speed,
        rate_hz=rate_hz,
        t0=t0,
        body=True,
        env_seed=env_seed,
        params=params,
    )


def write_csv(
    path: Path | str, rows: Sequence[Mapping[str, float | None]], *, anchor_ids: Sequence[str]
) -> None:
    """Rows in the survey CSV format ``ts,x,y,rssi_<id>...`` (empty = not heard)."""
    with Path(path).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ts", "x", "y", *(f"rssi_{a}" for a in anchor_ids)])
        for r in rows:
            w.writerow(
                [r["ts"], r["x"], r["y"], *("" if r.get(a) is None else r[a] for a in anchor_ids)]
            )
