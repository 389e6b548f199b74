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
    _grid: _WallGrid = field(init=False, repr=False, compare=False)
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
        object.__setattr__(self, "_grid", _WallGrid.build(seg, self.bounds))
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

    def crosses_wall(
        self, a: FloatArray, b: FloatArray, *, max_move: float | None = None
    ) -> npt.NDArray[np.bool_]:
        """Which of the moves ``a[i] -> b[i]`` (N x 2 each) properly cross a wall segment.

        This runs for every particle on every update. Short moves (a particle's step
        between scans) are tested only against the walls near their start cell; long ones
        against every wall. ``max_move``: the caller guarantees that every move starts in
        free space and is at most this long, which skips the checks for that."""
        grid = self._grid
        if max_move is not None and max_move <= grid.reach:
            return grid.crosses(a, b)
        ex, ey = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
        # a start outside the floor's box would be clamped to an edge cell whose wall
        # list need not reach it: those take the full test too
        short = ((ex * ex + ey * ey) <= grid.reach**2) & np.all(
            (a >= grid.lo) & (a <= grid.hi), axis=1
        )
        if short.all():
            return grid.crosses(a, b)
        hit = np.empty(len(a), dtype=np.bool_)
        hit[short] = grid.crosses(a[short], b[short])
        hit[~short] = self._crosses_all(a[~short], b[~short])
        return hit

    def crosses_wall_one(self, a: tuple[float, float], b: tuple[float, float]) -> bool:
        """``crosses_wall`` for one move, in plain Python: for a single move, the 30-odd
        numpy calls of the vectorised test cost more than the arithmetic itself."""
        grid = self._grid
        (ax, ay), (bx, by) = a, b
        x0, y0, x1, y1 = grid.box
        if (bx - ax) ** 2 + (by - ay) ** 2 <= grid.reach**2 and x0 <= ax <= x1 and y0 <= ay <= y1:
            _, ny = grid.shape
            walls = grid.cell_walls[
                int((ax - x0) / grid.cell_m) * ny + int((ay - y0) / grid.cell_m)
            ]
        else:
            walls = grid.all_walls
        return _crosses_py(ax, ay, bx, by, walls)

    def walls_between(self, a: Point, b: FloatArray) -> npt.NDArray[np.intp]:
        """How many wall segments the straight line from ``a`` to each of ``b`` (N x 2)
        crosses: the wall term of a radio path-loss model (training only, not per update)."""
        start = np.broadcast_to(np.asarray(a, dtype=np.float64), b.shape)
        counts: npt.NDArray[np.intp] = np.count_nonzero(self._crossings(start, b), axis=1)
        return counts

    def _crosses_all(self, a: FloatArray, b: FloatArray) -> npt.NDArray[np.bool_]:
        hit: npt.NDArray[np.bool_] = np.any(self._crossings(a, b), axis=1)
        return hit

    def _crossings(self, a: FloatArray, b: FloatArray) -> npt.NDArray[np.bool_]:
        """Four orientation tests per (move, wall) pair, written as outer products over
        precomputed wall vectors: moves x walls, True where the move crosses the wall."""
        cx, cy, dx, dy, kc = self._walls
        ax, ay, bx, by = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
        ex, ey = bx - ax, by - ay
        s = (ex * ay - ey * ax)[:, None]
        d1 = np.outer(ex, cy) - np.outer(ey, cx) - s
        d2 = np.outer(ex, cy + dy) - np.outer(ey, cx + dx) - s
        d3 = np.outer(ay, dx) - np.outer(ax, dy) - kc
        d4 = np.outer(by, dx) - np.outer(bx, dy) - kc
        cross: npt.NDArray[np.bool_] = (d1 * d2 < 0) & (d3 * d4 < 0)
        return cross

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


@dataclass(frozen=True)
class _WallGrid:
    """Walls bucketed by grid cell: for each cell, the segments within ``reach`` of it,
    padded to the same count with a zero-length segment that never crosses anything.
    A move no longer than ``reach`` from a point in a cell can only cross those, so the
    test is N x (walls near one cell) instead of N x (all walls): 4-8x less work on a
    furnished floor, and still exact."""

    origin: tuple[float, float]
    cell_m: float
    reach: float
    shape: tuple[int, int]
    # cell (ix * ny + iy) x 7 x padded slot: start x, start y, end x, end y, the wall
    # vector (end - start) and its cross term kc; one array so that one gather fetches
    # everything per particle
    table: FloatArray
    lo: FloatArray  # the floor's box, for callers that must check a start is inside
    hi: FloatArray
    # the same walls as plain floats (sx, sy, ex, ey) for the one-move test
    cell_walls: tuple[tuple[tuple[float, float, float, float], ...], ...]
    all_walls: tuple[tuple[float, float, float, float], ...]
    # per cell: is any wall within reach (most of a shop floor is open)
    walled: npt.NDArray[np.bool_]

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (float(self.lo[0]), float(self.lo[1]), float(self.hi[0]), float(self.hi[1]))

    # 0.5 m covers a step of 1.5 m/s for a third of a second; 5 Hz scans move less
    CELL_M = 0.5
    REACH_M = 0.5

    @classmethod
    def build(cls, seg: FloatArray, bounds: tuple[float, float, float, float]) -> _WallGrid:
        x0, y0, x1, y1 = bounds
        c, r = cls.CELL_M, cls.REACH_M
        # one spare cell on the far sides, so a start on the box's edge needs no clamp
        nx = int((x1 - x0) // c) + 1
        ny = int((y1 - y0) // c) + 1
        lo_x = np.minimum(seg[:, 0], seg[:, 2])
        hi_x = np.maximum(seg[:, 0], seg[:, 2])
        lo_y = np.minimum(seg[:, 1], seg[:, 3])
        hi_y = np.maximum(seg[:, 1], seg[:, 3])
        buckets: list[npt.NDArray[np.intp]] = []
        for ix in range(nx):
            for iy in range(ny):
                # the cell grown by the reach, against each wall's bounding box:
                # a superset of the walls a short move from this cell can touch
                cx0, cy0 = x0 + ix * c - r, y0 + iy * c - r
                cx1, cy1 = cx0 + c + 2 * r, cy0 + c + 2 * r
                near = (hi_x >= cx0) & (lo_x <= cx1) & (hi_y >= cy0) & (lo_y <= cy1)
                buckets.append(np.flatnonzero(near))
        k = max(1, max(len(b) for b in buckets))
        # the last row is the padding wall: zero length at the origin, so its
        # orientation products are 0 and never strictly negative
        padded = np.full((nx * ny, k), len(seg), dtype=np.intp)
        for i, b in enumerate(buckets):
            padded[i, : len(b)] = b
        ext = np.vstack([seg, np.zeros((1, 4))])
        sx, sy, ex, ey = (ext[:, i][padded] for i in range(4))
        wx, wy = ex - sx, ey - sy
        kc = wx * sy - wy * sx
        table = np.ascontiguousarray(np.stack([sx, sy, ex, ey, wx, wy, kc], axis=1))
        walls = tuple((float(a), float(b), float(c), float(d)) for a, b, c, d in seg)
        return cls(
            (x0, y0),
            c,
            r,
            (nx, ny),
            table,
            np.array([x0, y0]),
            np.array([x1, y1]),
            tuple(tuple(walls[i] for i in bucket) for bucket in buckets),
            walls,
            np.array([len(b) > 0 for b in buckets], dtype=np.bool_),
        )

    def crosses(self, a: FloatArray, b: FloatArray) -> npt.NDArray[np.bool_]:
        """For moves that start inside the floor's box and are at most ``reach`` long."""
        _, ny = self.shape
        cell = ((a - self.origin) * (1.0 / self.cell_m)).astype(np.intp)
        idx = cell[:, 0] * ny + cell[:, 1]
        # A move from a cell with no wall within reach crosses nothing. When no particle
        # of the cloud is near a wall (a cart in open floor), the ~15 numpy calls of the
        # test are skipped (decision 0020); otherwise all are tested: a subset would cost
        # more calls than it saves at 150 particles. mode="clip": as for the table.
        near = np.take(self.walled, idx, mode="clip")
        if not near.any():
            return near  # all False
        return self._crosses_rows(a, b, idx)

    def _crosses_rows(
        self, a: FloatArray, b: FloatArray, idx: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.bool_]:
        # mode="clip" only guards the table: callers send starts inside the box
        rows = np.take(self.table, idx, axis=0, mode="clip")
        sx, sy, ex, ey, wx, wy, kc = (rows[:, i] for i in range(7))
        ax, ay = a[:, 0:1], a[:, 1:2]
        bx, by = b[:, 0:1], b[:, 1:2]
        mx, my = bx - ax, by - ay
        # which side of the move each wall end lies on, and which side of each wall
        # the move's ends lie on: a proper crossing has both pairs on opposite sides
        s = mx * ay - my * ax
        d1 = mx * sy - my * sx - s
        d2 = mx * ey - my * ex - s
        d3 = ay * wx - ax * wy - kc
        d4 = by * wx - bx * wy - kc
        hit: npt.NDArray[np.bool_] = np.any((d1 * d2 < 0) & (d3 * d4 < 0), axis=1)
        return hit


def _crosses_py(
    ax: float, ay: float, bx: float, by: float, walls: tuple[tuple[float, float, float, float], ...]
) -> bool:
    """The orientation test of ``_WallGrid.crosses`` for one move, strict like it."""
    mx, my = bx - ax, by - ay
    for sx, sy, ex, ey in walls:
        d1 = mx * (sy - ay) - my * (sx - ax)
        d2 = mx * (ey - ay) - my * (ex - ax)
        if d1 * d2 >= 0:
            continue
        wx, wy = ex - sx, ey - sy
        d3 = wx * (ay - sy) - wy * (ax - sx)
        d4 = wx * (by - sy) - wy * (bx - sx)
        if d3 * d4 < 0:
            return True
    return False
