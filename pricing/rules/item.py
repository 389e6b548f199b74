"""Item promotions that give units away: buy X get Y, and gift with purchase.

Both discount the *cheapest* units: buy-X-get-Y on one scope walks the eligible units
dearest first in sets of X+Y and discounts the cheapest Y of every set; with a separate
get scope the cheapest get units are discounted, Y per X bought. The discount is spread
over every participating unit (bought and given), so a return gives back a fair share.
A gift's discount stays on the gift lines: the trigger is a condition, not consumed.
"""

from __future__ import annotations

from pricing.money import percent_of
from pricing.promotions import BuyXGetY, Gift, Scope
from pricing.rules.base import ITEM, Option, OptionRule, Rule, State


def eligible(st: State, rule: Rule, lines: list[int]) -> list[int]:
    """``lines`` with money left whose earlier promotions all combine with ``rule``."""
    net, applied = st.net, st.applied
    group, anything, combines = rule.group, rule.all_groups, rule.combines
    if len(lines) >= _SHARE_FROM:
        ok = st.ok_cache.get(rule.profile)
        if ok is None:
            ok = st.ok_cache[rule.profile] = _line_ok(st, rule)
        return [i for i in lines if ok[i]]
    out = []
    for i in lines:
        if net[i] <= 0:
            continue
        for a in applied[i]:  # inlined compatible(a, rule): this loop is hot
            if (
                a.group == group
                or not (a.all_groups or group in a.combines)
                or not (anything or a.group in combines)
            ):
                break
        else:
            out.append(i)
    return out


_SHARE_FROM = 8
"""Scopes this wide (basket-wide thresholds, big categories) share one per-line verdict per
rule profile and phase; narrower ones are cheaper to check line by line."""


def _line_ok(st: State, rule: Rule) -> list[bool]:
    """For every line: money left and compatible with all its earlier promotions."""
    group, anything, combines = rule.group, rule.all_groups, rule.combines
    applied = st.applied
    ok = []
    for i, left in enumerate(st.net):
        if left <= 0:
            ok.append(False)
            continue
        for a in applied[i]:
            if (
                a.group == group
                or not (a.all_groups or group in a.combines)
                or not (anything or a.group in combines)
            ):
                ok.append(False)
                break
        else:
            ok.append(True)
    return ok


def dearest_first(st: State, lines: list[int]) -> list[int]:
    unit = st.unit
    return sorted(lines, key=lambda i: (-unit[i], i))


class BuyXGetYRule(OptionRule):
    __slots__ = ("buy_qty", "get_qty", "get_scope", "max_sets", "percent_bp")
    phase_of = ITEM

    def __init__(self, promo: BuyXGetY) -> None:
        super().__init__(promo, promo.buy)
        self.buy_qty = promo.buy_qty
        self.get_qty = promo.get_qty
        self.percent_bp = promo.get_percent_bp
        self.get_scope = promo.get
        limit = promo.max_applications if promo.repeat else 1
        self.max_sets = limit if limit is not None else 1 << 30

    def index_scopes(self) -> tuple[Scope, ...]:
        return (self.promo.buy,) if self.get_scope is None else (self.promo.buy, self.get_scope)

    def option(self, st: State, slots: list[list[int]]) -> Option | None:
        if self.get_scope is None:
            return self._same(st, eligible(st, self, slots[0]))
        if len(slots) < 2 or not slots[1]:
            return None
        return self._other(st, eligible(st, self, slots[0]), eligible(st, self, slots[1]))

    def _same(self, st: State, lines: list[int]) -> Option | None:
        qty, unit = st.qty, st.unit
        size = self.buy_qty + self.get_qty
        units = 0
        for i in lines:
            units += qty[i]
        sets = min(units // size, self.max_sets)
        if not sets:
            return None
        left = sets * size
        pos = 0
        free = 0
        used: list[int] = []
        weights: list[int] = []
        for i in dearest_first(st, lines):
            take = qty[i] if qty[i] < left - pos else left - pos
            u = unit[i]
            for p in range(pos, pos + take):
                if p % size >= self.buy_qty:
                    free += u
            used.append(i)
            weights.append(u * take)
            pos += take
            if pos == left:
                break
        value = percent_of(free, self.percent_bp)
        if not value:
            return None
        return Option(self, value, used, weights, sets, f"buy {self.buy_qty} get {self.get_qty}")

    def _other(self, st: State, buy: list[int], get: list[int]) -> Option | None:
        qty, unit = st.qty, st.unit
        bought = 0
        for i in buy:
            bought += qty[i]
        sets = min(bought // self.buy_qty, self.max_sets)
        if not sets or not get:
            return None
        give = sets * self.get_qty
        free = 0
        used: list[int] = []
        weights: list[int] = []
        for i in sorted(get, key=lambda i: (unit[i], i)):  # cheapest get units first
            take = qty[i] if qty[i] < give else give
            free += unit[i] * take
            used.append(i)
            weights.append(unit[i] * take)
            give -= take
            if not give:
                break
        given = sets * self.get_qty - give
        sets = -(-given // self.get_qty)
        need = sets * self.buy_qty
        for i in dearest_first(st, buy):
            take = qty[i] if qty[i] < need else need
            used.append(i)
            weights.append(unit[i] * take)
            need -= take
            if not need:
                break
        value = percent_of(free, self.percent_bp)
        if not value:
            return None
        return Option(self, value, used, weights, sets, f"buy {self.buy_qty} get {self.get_qty}")


class GiftRule(OptionRule):
    __slots__ = ("gift_qty", "gift_sku", "min_qty", "min_spend", "repeat", "trigger")
    phase_of = ITEM

    def __init__(self, promo: Gift) -> None:
        super().__init__(promo, promo.trigger)
        self.gift_sku = promo.gift_sku
        self.gift_qty = promo.gift_qty
        self.min_qty = promo.min_qty
        self.min_spend = promo.min_spend
        self.repeat = promo.repeat
        trigger = promo.trigger
        # the gift never counts towards its own trigger
        self.trigger = trigger.model_copy(
            update={"exclude_skus": tuple(sorted({*trigger.exclude_skus, promo.gift_sku}))}
        )
        self.excl = frozenset(self.trigger.exclude_skus)

    def index_scopes(self) -> tuple[Scope, ...]:
        return (self.trigger, Scope(skus=(self.gift_sku,)))

    def option(self, st: State, slots: list[list[int]]) -> Option | None:
        if len(slots) < 2 or not slots[1] or not slots[0]:
            return None
        qty, net, unit = st.qty, st.net, st.unit
        units = spend = 0
        for i in slots[0]:
            units += qty[i]
            spend += net[i]
        times = 1 << 30
        if self.min_qty:
            times = min(times, units // self.min_qty)
        if self.min_spend:
            times = min(times, spend // self.min_spend)
        if not self.repeat:
            times = min(times, 1)
        if not times:
            return None
        give = times * self.gift_qty
        value = 0
        used: list[int] = []
        weights: list[int] = []
        for i in sorted(eligible(st, self, slots[1]), key=lambda i: (unit[i], i)):
            take = qty[i] if qty[i] < give else give
            value += unit[i] * take
            used.append(i)
            weights.append(unit[i] * take)
            give -= take
            if not give:
                break
        if not value:
            return None
        return Option(self, value, used, weights, times, f"gift {self.gift_sku}")
