"""Store layouts for the simulators: a floor in metres with zones, aisles, BLE beacon
anchors and shelves with their skus (``demo_store.toml`` is the default).

    layout = Layout.load(DEFAULT_LAYOUT)
    layout.beacons[0].key        # "ibeacon:...:1:1"
    layout.rssi_at(beacon, (x, y), rng)   # path-loss RSSI with noise, dBm
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocols import ble

DEFAULT_LAYOUT = Path(__file__).with_name("demo_store.toml")

Point = tuple[float, float]

# Log-distance path loss: RSSI(d) = P(1 m) - 10 n log10(d) + noise. n = 2.2 is a typical
# indoor exponent for 2.4 GHz in open retail space (2.0 is free space); sigma 3 dB of
# shadowing noise, and below -100 dBm a phone-grade receiver hears nothing.
PATH_LOSS_EXPONENT = 2.2
RSSI_NOISE_DB = 3.0
RSSI_FLOOR_DBM = -100


class LayoutError(ValueError):
    """The layout file is missing, not TOML, or names something inconsistent."""


@dataclass(frozen=True, slots=True)
class Zone:
    id: str
    rect: tuple[float, float, float, float]  # x0, y0, x1, y1

    def contains(self, p: Point) -> bool:
        x0, y0, x1, y1 = self.rect
        return x0 <= p[0] <= x1 and y0 <= p[1] <= y1


@dataclass(frozen=True, slots=True)
class Aisle:
    id: str
    start: Point
    end: Point


@dataclass(frozen=True, slots=True)
class BeaconAnchor:
    id: str
    kind: str  # "ibeacon" | "eddystone"
    pos: Point
    power_1m: int  # dBm at 1 m (for Eddystone the advertised 0 m power is this + 41)
    uuid: str = ""
    major: int = 0
    minor: int = 0
    namespace: str = ""
    instance: str = ""
    interval_s: float = 1.0

    @property
    def key(self) -> str:
        if self.kind == "ibeacon":
            return f"ibeacon:{self.uuid}:{self.major}:{self.minor}"
        return f"eddystone:{self.namespace}:{self.instance}"

    def advertisement(self) -> bytes:
        if self.kind == "ibeacon":
            return ble.ibeacon_adv(self.uuid, self.major, self.minor, self.power_1m)
        return ble.eddystone_uid_adv(
            self.namespace, self.instance, self.power_1m + ble.EDDYSTONE_0M_TO_1M_DB
        )

    @property
    def address(self) -> str:
        """A stable fake MAC per anchor (the codec never keys by it)."""
        digest = sum(ord(c) * (i + 1) for i, c in enumerate(self.id))
        return f"C0:FF:EE:{digest >> 16 & 255:02X}:{digest >> 8 & 255:02X}:{digest & 255:02X}"


@dataclass(frozen=True, slots=True)
class Shelf:
    id: str
    pos: Point
    skus: tuple[str, ...]
    aisle: str | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    name: str
    width_m: float
    height_m: float
    entrance: Point
    scanner: Point  # where the store box's BLE scanner sits
    zones: tuple[Zone, ...] = ()
    aisles: tuple[Aisle, ...] = ()
    beacons: tuple[BeaconAnchor, ...] = ()
    shelves: tuple[Shelf, ...] = ()
    members: tuple[str, ...] = field(default=())  # member QR codes shoppers may scan
    # sku -> what a cart camera sees (a protocols.vision.PRODUCT_CATEGORIES name); skus
    # without one (loose vegetables, rice) send no snapshot
    looks: dict[str, str] = field(default_factory=dict)
    # seeds the store's static radio environment in firmware_sim.rf (site survey and
    # carts with the site radio model share it, as a real store's walls and shelves do)
    radio_env_seed: int = 0

    @classmethod
    def load(cls, path: Path) -> Layout:
        try:
            doc = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise LayoutError(f"cannot read layout {path}: {err}") from err
        try:
            return cls.from_dict(doc)
        except (KeyError, TypeError, ValueError) as err:
            raise LayoutError(f"bad layout {path}: {err!r}") from err

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Layout:
        store = doc["store"]
        layout = cls(
            name=str(store.get("name", "store")),
            width_m=float(store["width_m"]),
            height_m=float(store["height_m"]),
            entrance=_pt(store["entrance"]),
            scanner=_pt(store.get("scanner", store["entrance"])),
            zones=tuple(Zone(z["id"], _rect(z["rect"])) for z in doc.get("zones", [])),
            aisles=tuple(Aisle(a["id"], _pt(a["from"]), _pt(a["to"])) for a in
                         doc.get("aisles", [])),
            beacons=tuple(_beacon(b) for b in doc.get("beacons", [])),
            shelves=tuple(Shelf(s["id"], _pt(s["pos"]), tuple(str(k) for k in s["skus"]),
                                s.get("aisle")) for s in doc.get("shelves", [])),
            members=tuple(str(m) for m in doc.get("members", {}).get("qr_codes", [])),
            looks={str(k): str(v) for k, v in doc.get("looks", {}).items()},
            radio_env_seed=int(store.get("radio_env_seed", 0)),
        )
        for p in [layout.entrance, layout.scanner, *(b.pos for b in layout.beacons),
                  *(s.pos for s in layout.shelves)]:
            if not (0 <= p[0] <= layout.width_m and 0 <= p[1] <= layout.height_m):
                raise ValueError(f"point {p} is outside the floor")
        return layout

    def zone_at(self, p: Point) -> str | None:
        return next((z.id for z in self.zones if z.contains(p)), None)

    def skus(self) -> list[str]:
        return sorted({sku for shelf in self.shelves for sku in shelf.skus})


def distance(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def rssi_at(beacon: BeaconAnchor, where: Point, rng: random.Random) -> int | None:
    """Simulated RSSI of ``beacon`` heard at ``where``; None below the receiver floor."""
    d = max(0.1, distance(beacon.pos, where))  # closer than 10 cm saturates anyway
    rssi = beacon.power_1m - 10 * PATH_LOSS_EXPONENT * math.log10(d) + rng.gauss(0, RSSI_NOISE_DB)
    return None if rssi < RSSI_FLOOR_DBM else round(rssi)


def _rect(value: Any) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = value
    return float(x0), float(y0), float(x1), float(y1)


def _pt(value: Any) -> Point:
    x, y = value
    return float(x), float(y)


def _beacon(b: dict[str, Any]) -> BeaconAnchor:
    kind = str(b.get("kind", "ibeacon"))
    if kind not in ("ibeacon", "eddystone"):
        raise ValueError(f"beacon {b.get('id')}: unknown kind {kind!r}")
    return BeaconAnchor(
        id=str(b["id"]), kind=kind, pos=_pt(b["pos"]), power_1m=int(b.get("power_1m", -59)),
        uuid=str(b.get("uuid", "")), major=int(b.get("major", 0)), minor=int(b.get("minor", 0)),
        namespace=str(b.get("namespace", "")), instance=str(b.get("instance", "")),
        interval_s=float(b.get("interval_s", 1.0)),
    )
