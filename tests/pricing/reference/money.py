"""Integer money arithmetic: minor units, basis points, one rounding rule.

Money is always an ``int`` count of minor units (cents, pence, fen) of the currency named
by the enclosing document (catalog, snapshot, basket, priced basket). Percentages are
basis points (``1_000`` = 10 %), never floats.

Rounding rule, used everywhere a division happens on money: **half-up on minor units**
(``round_half_up(5, 2) == 3``). Discounts are rounded once per application (per unit for
unit-price rules, per promotion application for the rest) and then split onto lines by
the largest remainder method, so the split itself never rounds. Points are floored
(``points_floor``): a shopper is never awarded a fraction of a point.
"""

from __future__ import annotations

from typing import NamedTuple

BP = 10_000  # basis points in 100 %


def round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half-up, for non-negative numerators."""
    return (2 * numerator + denominator) // (2 * denominator)


def percent_of(amount: int, bp: int) -> int:
    """``bp`` basis points of ``amount`` minor units, rounded half-up."""
    return (2 * amount * bp + BP) // (2 * BP)


def points_floor(base_minor: int, points: int, per_minor: int) -> int:
    """Points earned on ``base_minor``: ``points`` per ``per_minor`` spent, floored."""
    return base_minor * points // per_minor


def prorate(total: int, part: int, whole: int) -> int:
    """Floor of ``total * part / whole``; cumulative use makes partial refunds exact."""
    return total * part // whole if whole else 0


class Money(NamedTuple):
    """An amount with its currency, for callers that want one value to pass around."""

    amount: int
    currency: str

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} minor units"
