"""Bundles and combos: components together for one price (``3 for 10`` is a bundle with
one component of 3). Units go into bundles dearest first, which is the shopper's best
price; a bundle is only formed while it is cheaper than its units."""

from __future__ import annotations

from pricing.promotions import Bundle, Scope
from tests.pricing.reference.rules.base import ITEM, Option, OptionRule, State
from tests.pricing.reference.rules.item import dearest_first, eligible


class BundleRule(OptionRule):
    __slots__ = ("bundle_price", "max_sets", "sizes")
    phase_of = ITEM

    def __init__(self, promo: Bundle) -> None:
        super().__init__(promo, promo.components[0].scope)
        self.sizes = tuple(c.qty for c in promo.components)
        self.bundle_price = promo.price
        limit = promo.max_applications if promo.repeat else 1
        self.max_sets = limit if limit is not None else 1 << 30

    def index_scopes(self) -> tuple[Scope, ...]:
        return tuple(c.scope for c in self.promo.components)

    def option(self, st: State, slots: list[list[int]]) -> Option | None:
        if len(slots) < len(self.sizes):
            return None
        qty, unit = st.qty, st.unit
        left: dict[int, int] = {}
        picks: list[list[int]] = []  # per component: line index per unit, dearest first
        sets = self.max_sets
        for size, lines in zip(self.sizes, slots, strict=True):
            want = sets * size
            units: list[int] = []
            for i in dearest_first(st, eligible(st, self, lines)):
                avail = left.get(i, qty[i])
                take = avail if avail < want - len(units) else want - len(units)
                if take:
                    units.extend([i] * take)
                    left[i] = avail - take
                if len(units) == want:
                    break
            sets = min(sets, len(units) // size)
            if not sets:
                return None
            picks.append(units)
        value = 0
        formed = 0
        for k in range(sets):
            together = 0
            for size, units in zip(self.sizes, picks, strict=True):
                for i in units[k * size : (k + 1) * size]:
                    together += unit[i]
            if together <= self.bundle_price:
                break  # units are dearest first: later sets are no cheaper
            value += together - self.bundle_price
            formed += 1
        if not formed:
            return None
        weight: dict[int, int] = {}
        for size, units in zip(self.sizes, picks, strict=True):
            for i in units[: formed * size]:
                weight[i] = weight.get(i, 0) + unit[i]
        used = sorted(weight)
        return Option(
            self, value, used, [weight[i] for i in used], formed, f"bundle for {self.bundle_price}"
        )
