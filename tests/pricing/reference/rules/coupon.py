"""Coupons, applied only when their code is presented.

Basket coupons (amount or percent, optionally with ``min_spend``) work like thresholds.
Item coupons (``max_units``) discount up to that many of the dearest eligible units, each
by the amount (at most the unit's net) or by the percent; the sum is rounded once and
split onto the lines in proportion to what each unit's benefit was.
"""

from __future__ import annotations

from fractions import Fraction
from math import lcm

from pricing.promotions import Coupon
from tests.pricing.reference.money import round_half_up
from tests.pricing.reference.rules.base import COUPON, Option, OptionRule, State
from tests.pricing.reference.rules.item import eligible
from tests.pricing.reference.rules.threshold import spend_option


class CouponRule(OptionRule):
    __slots__ = ("amount_off", "code", "max_units", "min_spend", "percent_bp")
    phase_of = COUPON

    def __init__(self, promo: Coupon) -> None:
        super().__init__(promo, promo.scope)
        self.code = promo.code
        self.min_spend = promo.min_spend
        self.percent_bp = promo.percent_bp
        self.amount_off = promo.amount_off
        self.max_units = promo.max_units

    def option(self, st: State, slots: list[list[int]]) -> Option | None:
        lines = eligible(st, self, slots[0])
        if self.max_units is None:
            return spend_option(
                self,
                st,
                lines,
                min_spend=self.min_spend,
                percent_bp=self.percent_bp,
                amount_off=self.amount_off,
                max_times=1,
            )
        return self._item(st, lines)

    def _item(self, st: State, lines: list[int]) -> Option | None:
        net, qty = st.net, st.qty
        if sum(net[i] for i in lines) < self.min_spend:
            return None
        unit_net = {i: Fraction(net[i], qty[i]) for i in lines}
        left = self.max_units or 0
        used: list[int] = []
        counts: list[int] = []
        for i in sorted(lines, key=lambda i: (-unit_net[i], i)):
            take = min(qty[i], left)
            used.append(i)
            counts.append(take)
            left -= take
            if not left:
                break
        if not used:
            return None
        parts = []
        for i, k in zip(used, counts, strict=True):
            if self.percent_bp:
                parts.append(unit_net[i] * k * self.percent_bp / 10_000)
            else:
                parts.append(min(Fraction(self.amount_off), unit_net[i]) * k)
        off = sum(parts, Fraction(0))
        value = round_half_up(off.numerator, off.denominator)
        if not value:
            return None
        scale = lcm(*(p.denominator for p in parts))
        weights = [int(p * scale) for p in parts]  # each unit's own benefit, exactly
        units = sum(counts)
        what = f"{self.percent_bp / 100:g}%" if self.percent_bp else f"{self.amount_off}"
        return Option(self, value, used, weights, units, f"coupon {self.code}: {what} off x{units}")
