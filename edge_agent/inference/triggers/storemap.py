"""The store as the agent sees it: floor size, zones, aisles, shelves (with skus) and BLE
anchors, read from the layout TOML the simulators use (``[store]``, ``[[zones]]``,
``[[aisles]]``, ``[[beacons]]``, ``[[shelves]]``). The agent does not import
``firmware_sim`` (dependency rule), so it reads the file format itself.

``PositionerLocator`` puts the trained positioner (``edge_agent.inference.positioning``)
behind the same ``locate`` call, for stores with a model. ``BeaconLocator`` is the
positioning fallback the trigger service uses while no trained positioning model is
installed for the store: the zone is the zone of the strongest
anchor heard (anchors are installed one or more per zone, so this is right whenever the
cart is nearer its zone's anchor than any other), the point is an RSSI-weighted centroid
of the three strongest anchors (for the map dot), and the shelf is the nearest shelf
within ``SHELF_RADIUS_M`` of that point.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.inference.triggers.errors import TriggerError

if TYPE_CHECKING:  # numpy/onnxruntime load only where a trained model is configured
    from edge_agent.inference.positioning import Positioner

Point = tuple[float, float]
SHELF_RADIUS_M = 2.0  # a shopper "at" a shelf stands within an arm and a cart of it
CENTROID_ANCHORS = 3  # more anchors pull the centroid towards the middle of the store


class LayoutError(TriggerError):
    """The layout file is missing or malformed."""


@dataclass(frozen=True, slots=True)
class MapZone:
    id: str
    rect: tuple[float, float, float, float]

    def contains(self, p: Point) -> bool:
        x0, y0, x1, y1 = self.rect
        return x0 <= p[0] <= x1 and y0 <= p[1] <= y1


@dataclass(frozen=True, slots=True)
class MapShelf:
    id: str
    pos: Point
    skus: tuple[str, ...]
    aisle: str | None


@dataclass(frozen=True, slots=True)
class MapAisle:
    id: str
    start: Point
    end: Point


@dataclass(frozen=True, slots=True)
class Anchor:
    key: str  # protocols.ble identity, as carts report it
    pos: Point


@dataclass(frozen=True, slots=True)
class Location:
    x: float
    y: float
    zone: str | None
    shelf: str | None


@dataclass(frozen=True)
class StoreMap:
    name: str
    width_m: float
    height_m: float
    entrance: Point
    zones: tuple[MapZone, ...]
    aisles: tuple[MapAisle, ...]
    shelves: tuple[MapShelf, ...]
    anchors: tuple[Anchor, ...]

    @classmethod
    def load(cls, path: Path) -> StoreMap:
        try:
            doc = tomllib.loads(Path(path).read_text())
            return cls.from_dict(doc)
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as err:
            raise LayoutError(f"layout {path}: {err!r}") from err

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> StoreMap:
        store = doc["store"]
        return cls(
            name=str(store.get("name", "store")),
            width_m=float(store["width_m"]),
            height_m=float(store["height_m"]),
            entrance=_pt(store["entrance"]),
            zones=tuple(MapZone(str(z["id"]), _rect(z["rect"])) for z in doc.get("zones", [])),
            aisles=tuple(MapAisle(str(a["id"]), _pt(a["from"]), _pt(a["to"]))
                         for a in doc.get("aisles", [])),
            shelves=tuple(MapShelf(str(s["id"]), _pt(s["pos"]), tuple(str(k) for k in s["skus"]),
                                   s.get("aisle")) for s in doc.get("shelves", [])),
            anchors=tuple(Anchor(_beacon_key(b), _pt(b["pos"])) for b in doc.get("beacons", [])),
        )

    def zone_at(self, p: Point) -> str | None:
        return next((z.id for z in self.zones if z.contains(p)), None)

    def shelf_near(self, p: Point, *, radius_m: float = SHELF_RADIUS_M) -> MapShelf | None:
        best = min(self.shelves, key=lambda s: _dist(s.pos, p), default=None)
        return best if best is not None and _dist(best.pos, p) <= radius_m else None

    def shelf_of_sku(self, sku: str) -> MapShelf | None:
        return next((s for s in self.shelves if sku in s.skus), None)

    def shelf(self, shelf_id: str) -> MapShelf | None:
        return next((s for s in self.shelves if s.id == shelf_id), None)


class BeaconLocator:
    """Zone of the strongest anchor, centroid point, nearest shelf (see module doc)."""

    def __init__(self, store_map: StoreMap) -> None:
        self.map = store_map
        self._zone_of = {a.key: store_map.zone_at(a.pos) for a in store_map.anchors}
        # what ``locate`` needs per scan report, computed once (it runs 1,500 times a
        # second for 300 carts): anchor positions and the shelves as plain tuples
        self._pos = {a.key: a.pos for a in store_map.anchors}
        self._shelves = _shelf_table(store_map)

    def locate(self, readings: Sequence[tuple[str, int]], *, cart_id: str = "",
               t: float = 0.0) -> Location | None:
        pos = self._pos
        known = [(rssi, key) for key, rssi in readings if key in pos]
        if not known:
            return None
        known.sort(reverse=True)
        total = x = y = 0.0
        for rssi, key in known[:CENTROID_ANCHORS]:
            w = 10 ** (rssi / 10)  # weight ~ received power in mW: 10 dB stronger counts 10x
            ax, ay = pos[key]
            total += w
            x += w * ax
            y += w * ay
        x, y = x / total, y / total
        return Location(x=x, y=y, zone=self._zone_of[known[0][1]],
                        shelf=_shelf_near(self._shelves, x, y))


class PositionerLocator:
    """The trained positioner (decision 0009) behind the trigger service's ``Locator``:
    per cart, smoothed and filtered. Zone from the model's floor plan (the layout's
    zones when trained by ``models/positioning/train_demo_store.py``), else the layout's;
    shelf = nearest shelf within ``SHELF_RADIUS_M``, as for ``BeaconLocator``."""

    def __init__(self, positioner: Positioner, store_map: StoreMap | None) -> None:
        # imported here, not per scan: the module loads numpy, wanted only with a model
        from edge_agent.inference.positioning import ScanReport

        self.positioner = positioner
        self.map = store_map
        self._report = ScanReport
        self._shelves = _shelf_table(store_map) if store_map is not None else ()

    def locate(self, readings: Sequence[tuple[str, int]], *, cart_id: str = "",
               t: float = 0.0) -> Location | None:
        report = self._report
        update = self.positioner.observe(
            cart_id, [report(key, float(rssi), t) for key, rssi in readings], t=t)
        if update is None:
            return None
        zone = update.zone
        if zone is None and self.map is not None:
            zone = self.map.zone_at((update.x, update.y))
        return Location(x=update.x, y=update.y, zone=zone,
                        shelf=_shelf_near(self._shelves, update.x, update.y))

    def forget(self, cart_id: str) -> None:
        self.positioner.forget(cart_id)


ShelfTable = tuple[tuple[float, float, str], ...]


def _shelf_table(store_map: StoreMap) -> ShelfTable:
    return tuple((s.pos[0], s.pos[1], s.id) for s in store_map.shelves)


def _shelf_near(shelves: ShelfTable, x: float, y: float) -> str | None:
    """``StoreMap.shelf_near`` for the locators, which run on every scan report: the
    first of the nearest shelves within ``SHELF_RADIUS_M``, over plain tuples."""
    shelf, best = None, math.inf
    for sx, sy, sid in shelves:
        d = math.hypot(sx - x, sy - y)
        if d < best:
            shelf, best = sid, d
    return shelf if best <= SHELF_RADIUS_M else None


def _beacon_key(b: dict[str, Any]) -> str:
    # the same identity strings as protocols.ble / firmware_sim.layouts.BeaconAnchor.key
    if str(b.get("kind", "ibeacon")) == "ibeacon":
        return f"ibeacon:{b['uuid']}:{int(b['major'])}:{int(b['minor'])}"
    return f"eddystone:{b['namespace']}:{b['instance']}"


def _dist(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _pt(v: Any) -> Point:
    x, y = v
    return float(x), float(y)


def _rect(v: Any) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = v
    return float(x0), float(y0), float(x1), float(y1)
