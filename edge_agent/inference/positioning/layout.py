"""Floor plan for positioning: walls (an outline polygon plus obstacle polygons such as
shelf runs) and named zones. Pure geometry on numpy arrays, vectorised over particles.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.inference.positioning.errors import SurveyError

Point = tuple[float, float]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    rect: tuple[float, float, float, float]  # x0, y0, x1, y1 in metres

    def contains(self, x: float, y: float) -> bool:
        x0, y0, x1, y1 = self.rect
        return x0 <= x <= x1 and y0 <= y <= y1


@dataclass(frozen=True)
class FloorPlan:
    """Free space = inside ``outline`` and outside every obstacle; walls are their edges."""

    outline: tuple[Point, ...]
    obstacles: tuple[tuple[Point, ...], ...] = ()
    zones: tuple[Zone, ...] = ()
    _walls: tuple[FloatArray, ...] = field(init=False, repr=False, compare=False)
    _rings: tuple[tuple[FloatArray, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.outline) < 3:
            raise ValueError("a floor outline needs at least 3 vertices")
        segs: list[tuple[float, float, float, float]] = []
        for poly in (self.outline, *self.obstacles):
            for i, a in enumerate(poly):
                b = poly[(i + 1) % len(poly)]
                if a != b:
                    segs.append((a[0], a[1], b[0], b[1]))
        seg = np.array(segs, dtype=np.float64).reshape(-1, 4)
        cx, cy = seg[:, 0], seg[:, 1]
        dx, dy = seg[:, 2] - cx, seg[:, 3] - cy
        object.__setattr__(self, "_walls", (cx, cy, dx, dy, dx * cy - dy * cx))
        object.__setattr__(
            self,
            "_rings",
            tuple(_ring(poly) for poly in (self.outline, *self.obstacles)),
        )

    @classmethod
    def rectangle(cls, x0: float, y0: float, x1: float, y1: float) -> FloorPlan:
        return cls(outline=((x0, y0), (x1, y0), (x1, y1), (x0, y1)))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        xs = [p[0] for p in self.outline]
        ys = [p[1] for p in self.outline]
        return min(xs), min(ys), max(xs), max(ys)

    def free(self, p: FloatArray) -> npt.NDArray[np.bool_]:
        """Which of the points ``p`` (N x 2) are in walkable space."""
        ok = _inside(self._rings[0], p)
        for ring in self._rings[1:]:
            ok &= ~_inside(ring, p)
        return ok

    def crosses_wall(self, a: FloatArray, b: FloatArray) -> npt.NDArray[np.bool_]:
        """Which of the moves ``a[i] -> b[i]`` (N x 2 each) properly cross a wall segment.

        Four orientation tests per (move, wall) pair, written as outer products over
        precomputed wall vectors: this runs for every particle on every update."""
        cx, cy, dx, dy, kc = self._walls
        ax, ay, bx, by = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
        ex, ey = bx - ax, by - ay
        s = (ex * ay - ey * ax)[:, None]
        d1 = np.outer(ex, cy) - np.outer(ey, cx) - s
        d2 = np.outer(ex, cy + dy) - np.outer(ey, cx + dx) - s
        d3 = np.outer(ay, dx) - np.outer(ax, dy) - kc
        d4 = np.outer(by, dx) - np.outer(bx, dy) - kc
        hit: npt.NDArray[np.bool_] = np.any((d1 * d2 < 0) & (d3 * d4 < 0), axis=1)
        return hit

    def zone_at(self, x: float, y: float) -> str | None:
        for zone in self.zones:
            if zone.contains(x, y):
                return zone.name
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "outline": [list(p) for p in self.outline],
            "obstacles": [[list(p) for p in poly] for poly in self.obstacles],
            "zones": [{"name": z.name, "rect": list(z.rect)} for z in self.zones],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FloorPlan:
        return cls(
            outline=tuple((float(x), float(y)) for x, y in data["outline"]),
            obstacles=tuple(
                tuple((float(x), float(y)) for x, y in poly) for poly in data.get("obstacles", [])
            ),
            zones=tuple(
                Zone(str(z["name"]), tuple(float(v) for v in z["rect"]))  # type: ignore[arg-type]
                for z in data.get("zones", [])
            ),
        )

    @classmethod
    def load(cls, path: Path, *, zones: Path | None = None) -> FloorPlan:
        """An outline CSV ``x,y`` (one vertex a row, as the calib2021 ``layout.csv``), or a
        JSON file in ``to_json`` form; ``zones`` an optional CSV ``name,x0,y0,x1,y1``."""
        try:
            if path.suffix == ".json":
                plan = cls.from_json(json.loads(path.read_text()))
            else:
                with path.open(newline="") as fh:
                    rows = list(csv.DictReader(fh))
                pts = [(float(r["x"]), float(r["y"])) for r in rows]
                if len(pts) > 1 and pts[0] == pts[-1]:
                    pts = pts[:-1]  # closed rings repeat the first vertex
                plan = cls(outline=tuple(pts))
            if zones is not None:
                with zones.open(newline="") as fh:
                    zs = tuple(
                        Zone(
                            r["name"],
                            (float(r["x0"]), float(r["y0"]), float(r["x1"]), float(r["y1"])),
                        )
                        for r in csv.DictReader(fh)
                    )
                plan = cls(outline=plan.outline, obstacles=plan.obstacles, zones=zs)
        except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as err:
            raise SurveyError(str(path), f"not a floor plan: {err}") from err
        return plan


def _ring(poly: tuple[Point, ...]) -> tuple[FloatArray, ...]:
    v = np.asarray(poly, dtype=np.float64)
    x0, y0 = v[:, 0], v[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    dy = y1 - y0
    # horizontal edges never straddle a ray; the substitute only avoids dividing by zero
    slope = (x1 - x0) / np.where(dy == 0, 1.0, dy)
    return x0, y0, y1, slope


def _inside(ring: tuple[FloatArray, ...], p: FloatArray) -> npt.NDArray[np.bool_]:
    """Even-odd ray casting, vectorised over points."""
    x0, y0, y1, slope = ring
    px, py = p[:, 0:1], p[:, 1:2]
    straddle = (y0 > py) != (y1 > py)
    xcross = slope * (py - y0) + x0
    res: npt.NDArray[np.bool_] = (np.count_nonzero(straddle & (px < xcross), axis=1) % 2) == 1
    return res
