"""Basket thresholds: spend X on a scope, get an amount (once or per multiple) or a
percent off that scope's subtotal. Member day is a threshold with ``min_spend=0``, a
weekday condition and ``member_only``. The subtotal is the lines' net after item
promotions, on lines whose earlier promotions combine with this one."""

from __future__ import annotations

from pricing.money import percent_of
from pricing.promotions import Scope, Threshold
from pricing.rules.base import THRESHOLD, Option, OptionRule, Rule, State
from pricing.rules.item import eligible


class ThresholdRule(OptionRule):
    __slots__ = ("amount_off", "max_times", "min_spend", "percent_bp", "scope")
    phase_of = THRESHOLD

    def __init__(self, promo: Threshold) -> None:
        super().__init__(promo, promo.scope)
        self.scope = promo.scope
        self.min_spend = promo.min_spend
        self.percent_bp = promo.percent_bp
        self.amount_off = promo.amount_off
        limit = promo.max_applications if promo.repeat else 1
        self.max_times = limit if limit is not None else 1 << 30

    def index_scopes(self) -> tuple[Scope, ...]:
        return (self.scope,)

    def option(self, st: State, slots: list[list[int]]) -> Option | None:
        if self.min_spend:
            # eligibility only removes lines and nets are never negative: when every line
            # in scope together misses the threshold, the eligible ones do too
            net = st.net
            if sum([net[i] for i in slots[0]]) < self.min_spend:
                return None
        return spend_option(
            self,
            st,
            eligible(st, self, slots[0]),
            min_spend=self.min_spend,
            percent_bp=self.percent_bp,
            amount_off=self.amount_off,
            max_times=self.max_times,
        )


def spend_option(
    rule: Rule,
    st: State,
    lines: list[int],
    *,
    min_spend: int,
    percent_bp: int,
    amount_off: int,
    max_times: int,
) -> Option | None:
    """Amount or percent off the subtotal of ``lines``, once ``min_spend`` is reached."""
    net = st.net
    weights = [net[i] for i in lines]
    subtotal = sum(weights)
    if not subtotal or subtotal < min_spend:
        return None
    if percent_bp:
        times = 1
        value = percent_of(subtotal, percent_bp)
        detail = f"{percent_bp / 100:g}% off {subtotal}"
    else:
        times = min(subtotal // min_spend, max_times) if min_spend else 1
        value = min(amount_off * times, subtotal)
        detail = f"{amount_off} off per {min_spend or 'basket'} x{times}"
    if not value:
        return None
    return Option(rule, value, lines, weights, times, detail)
