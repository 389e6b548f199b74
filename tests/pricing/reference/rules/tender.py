"""Tenders and points: stored value, points as payment, points earned.

Order (phase 6): stored value first, then points, each within its caps:
- stored value: at most the member's balance, ``max_share_bp`` of the total, and the total;
- points: whole blocks (``block_points`` pay ``block_minor``), at most the member's
  balance, ``max_share_bp`` of the total and what stored value left; nothing below
  ``min_points``. Share caps are floored so a cap is never exceeded.
Both are allocated onto lines by largest remainder (by line net), so a return gives back
exactly the stored value and points that paid for the returned lines.

Points earned: each active ``points_earn`` rule gives ``points`` per ``per_minor`` of the
net its scope's lines were paid in money (net minus the points tender), floored; within an
exclusivity group only the best rule counts. Items with ``earns_points=False`` never earn.
"""

from __future__ import annotations

from pricing.promotions import PointsEarn, PointsTender, StoredValueTender
from tests.pricing.reference.allocate import largest_remainder
from tests.pricing.reference.money import BP
from tests.pricing.reference.rules.base import TENDER, Rule, State


class StoredValueRule(Rule):
    __slots__ = ("max_share_bp",)
    phase_of = TENDER

    def __init__(self, promo: StoredValueTender) -> None:
        super().__init__(promo, None)
        self.max_share_bp = promo.max_share_bp

    def amount(self, *, total: int, requested: int, balance: int) -> int:
        return min(requested, balance, total * self.max_share_bp // BP)


class PointsTenderRule(Rule):
    __slots__ = ("block_minor", "block_points", "max_share_bp", "min_points")
    phase_of = TENDER

    def __init__(self, promo: PointsTender) -> None:
        super().__init__(promo, None)
        self.block_points = promo.block_points
        self.block_minor = promo.block_minor
        self.max_share_bp = promo.max_share_bp
        self.min_points = promo.min_points

    def redeem(self, *, total: int, due: int, requested: int, balance: int) -> tuple[int, int]:
        """``(points used, minor units paid)`` for a request of ``requested`` points."""
        cap = min(due, total * self.max_share_bp // BP)
        blocks = min(requested, balance) // self.block_points
        blocks = min(blocks, cap // self.block_minor)
        points = blocks * self.block_points
        if not points or points < self.min_points:
            return 0, 0
        return points, blocks * self.block_minor


class EarnRule(Rule):
    __slots__ = ("per_minor", "points")
    phase_of = TENDER

    def __init__(self, promo: PointsEarn) -> None:
        super().__init__(promo, promo.scope)
        self.points = promo.points
        self.per_minor = promo.per_minor


def earn_points(
    st: State, rules: list[EarnRule], base: list[int]
) -> tuple[list[int], list[tuple[EarnRule, int, list[int]]]]:
    """Points per line, and ``(rule, points, lines)`` for each rule that counted."""
    best: dict[str, tuple[int, EarnRule, list[int]]] = {}
    skus, cats = st.skus, st.cats
    for rule in rules:
        lines = [i for i in range(st.n) if base[i] > 0 and rule.matches(skus[i], cats[i])]
        pts = sum(base[i] for i in lines) * rule.points // rule.per_minor
        if not pts:
            continue
        held = best.get(rule.group)
        if held is None or pts > held[0]:
            best[rule.group] = (pts, rule, lines)
    per_line = [0] * st.n
    counted = []
    for pts, rule, lines in sorted(best.values(), key=lambda b: b[1].ordinal):
        for i, share in zip(lines, largest_remainder(pts, [base[i] for i in lines]), strict=True):
            per_line[i] += share
        counted.append((rule, pts, lines))
    return per_line, counted
