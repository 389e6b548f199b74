"""Routes through the store: grid A* between points, nearest-neighbour over the stops.

The floor is a grid of ``CELL_M`` cells. Blocked cells are the shelf racks, derived
from the layout's aisles: between two neighbouring parallel (vertical) aisles stands a
rack, ``RACK_MARGIN_M`` clear of each aisle and of the aisle ends. That is all a layout
file says about racks, and it is enough to route along aisles instead of through them.

The order of the stops is nearest-neighbour by path length from where the cart is - not
optimal (that is a travelling-salesman problem) but within a few steps of it for the
handful of shelves on a shopping list, and it is what shoppers do anyway.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence
from functools import lru_cache

from edge_agent.inference.triggers.storemap import Point, StoreMap

CELL_M = 0.5  # half a metre: a cart's width; finer grids only cost time
RACK_MARGIN_M = 1.0  # walkway on each side of an aisle line and at its ends


class Grid:
    def __init__(self, store: StoreMap, *, cell_m: float = CELL_M) -> None:
        self.cell = cell_m
        self.w = max(1, math.ceil(store.width_m / cell_m))
        self.h = max(1, math.ceil(store.height_m / cell_m))
        self.blocked: set[tuple[int, int]] = set()
        self.racks: list[tuple[float, float, float, float]] = []
        vertical = sorted((a for a in store.aisles if a.start[0] == a.end[0]),
                          key=lambda a: a.start[0])
        for left, right in itertools.pairwise(vertical):
            x0, x1 = left.start[0] + RACK_MARGIN_M, right.start[0] - RACK_MARGIN_M
            y0 = max(min(left.start[1], left.end[1]), min(right.start[1], right.end[1]))
            y1 = min(max(left.start[1], left.end[1]), max(right.start[1], right.end[1]))
            y0, y1 = y0 + RACK_MARGIN_M, y1 - RACK_MARGIN_M
            if x1 <= x0 or y1 <= y0:
                continue
            self.racks.append((x0, y0, x1, y1))
            for i in range(self.w):
                for j in range(self.h):
                    cx, cy = (i + 0.5) * cell_m, (j + 0.5) * cell_m
                    if x0 <= cx <= x1 and y0 <= cy <= y1:
                        self.blocked.add((i, j))
        self._path = lru_cache(maxsize=4096)(self._astar)

    def cell_of(self, p: Point) -> tuple[int, int]:
        i = min(self.w - 1, max(0, int(p[0] / self.cell)))
        j = min(self.h - 1, max(0, int(p[1] / self.cell)))
        if (i, j) in self.blocked:  # a point inside a rack (a shelf face): nearest free cell
            i, j = min(((a, b) for a in range(self.w) for b in range(self.h)
                        if (a, b) not in self.blocked),
                       key=lambda c: (c[0] - i) ** 2 + (c[1] - j) ** 2)
        return i, j

    def center(self, c: tuple[int, int]) -> Point:
        return ((c[0] + 0.5) * self.cell, (c[1] + 0.5) * self.cell)

    def path(self, a: Point, b: Point) -> list[Point]:
        cells = self._path(self.cell_of(a), self.cell_of(b))
        return [self.center(c) for c in cells]

    def _astar(self, start: tuple[int, int], goal: tuple[int, int]) -> tuple[tuple[int, int], ...]:
        def h(c: tuple[int, int]) -> float:
            return math.hypot(c[0] - goal[0], c[1] - goal[1])

        frontier: list[tuple[float, tuple[int, int]]] = [(h(start), start)]
        came: dict[tuple[int, int], tuple[int, int] | None] = {start: None}
        cost = {start: 0.0}
        while frontier:
            _, cur = heapq.heappop(frontier)
            if cur == goal:
                break
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)):
                nxt = (cur[0] + dx, cur[1] + dy)
                if not (0 <= nxt[0] < self.w and 0 <= nxt[1] < self.h) or nxt in self.blocked:
                    continue
                step = math.sqrt(2) if dx and dy else 1.0
                new = cost[cur] + step
                if new < cost.get(nxt, math.inf):
                    cost[nxt], came[nxt] = new, cur
                    heapq.heappush(frontier, (new + h(nxt), nxt))
        if goal not in came:
            return (start, goal)  # disconnected (bad layout): a straight line, not nothing
        out = [goal]
        while (prev := came[out[-1]]) is not None:
            out.append(prev)
        return tuple(reversed(out))


def path_length(points: Sequence[Point]) -> float:
    return sum(math.dist(a, b) for a, b in itertools.pairwise(points))


def plan_route(grid: Grid, start: Point, stops: Sequence[tuple[str, Point]],
               *, end: Point | None = None) -> tuple[list[str], list[Point]]:
    """Visit ``stops`` (id, point) nearest-first from ``start``; returns the order and
    the polyline (then on to ``end``, e.g. the checkout, if given)."""
    left = list(stops)
    here = start
    order: list[str] = []
    line: list[Point] = [start]
    while left:
        best = min(left, key=lambda s: (path_length(grid.path(here, s[1])), s[0]))
        left.remove(best)
        order.append(best[0])
        line.extend(grid.path(here, best[1])[1:])
        here = best[1]
    if end is not None:
        line.extend(grid.path(here, end)[1:])
    return order, line
