"""Markdowns: percent / amount off / new price per unit, optionally near-expiry only."""

from __future__ import annotations

from pricing.promotions import Markdown, Scope, TierPrice
from tests.pricing.reference.money import percent_of
from tests.pricing.reference.rules.base import MARKDOWN, Rule, State


class UnitRule(Rule):
    """A rule that sets a new unit price (markdowns, member tier prices)."""

    __slots__ = ("amount_off", "new_price", "percent_bp")

    def __init__(self, promo: Markdown | TierPrice, scope: Scope) -> None:
        super().__init__(promo, scope)
        self.percent_bp: int = promo.percent_bp
        self.amount_off: int = promo.amount_off
        self.new_price: int | None = promo.new_price

    def unit_after(self, unit: int, st: State, i: int) -> int:
        """The unit price this rule gives line ``i`` starting from ``unit`` (never higher)."""
        if self.percent_bp:
            return unit - percent_of(unit, self.percent_bp)
        if self.amount_off:
            return unit - self.amount_off if unit > self.amount_off else 0
        assert self.new_price is not None
        return self.new_price if self.new_price < unit else unit


class MarkdownRule(UnitRule):
    __slots__ = ("within_ms",)
    phase_of = MARKDOWN

    def __init__(self, promo: Markdown) -> None:
        super().__init__(promo, promo.scope)
        w = promo.near_expiry_within_min
        self.within_ms = None if w is None else w * 60_000

    def unit_after(self, unit: int, st: State, i: int) -> int:
        if self.within_ms is not None:
            best_before = st.expiry[i]
            if best_before is None or best_before - st.now > self.within_ms:
                return unit
        return UnitRule.unit_after(self, unit, st, i)
