"""What every compiled rule shares: scope, conditions, combination, and the per-call state."""

from __future__ import annotations

from typing import Any

from pricing.promotions import Conditions, Scope

MARKDOWN, TIER, ITEM, THRESHOLD, COUPON, TENDER = 1, 2, 3, 4, 5, 6
PHASE_NAMES = {
    MARKDOWN: "markdown",
    TIER: "tier",
    ITEM: "item",
    THRESHOLD: "threshold",
    COUPON: "coupon",
    TENDER: "tender",
}

_DAY_MS = 86_400_000
_EPOCH_ORDINAL = 719_163  # date(1970, 1, 1).toordinal()


class State:
    """Mutable scratch space of one ``price()`` call; never outlives it.

    Lines are in canonical order (sku, then line id); index ``i`` is a line everywhere.
    """

    __slots__ = (
        "allocs",
        "applied",
        "base",
        "cats",
        "coupons",
        "earns",
        "expiry",
        "has_member",
        "line_ids",
        "local_days",
        "minute",
        "month_day",
        "n",
        "net",
        "now",
        "ok_cache",
        "qty",
        "skus",
        "store_id",
        "tier",
        "unit",
        "weekday",
    )
    n: int
    line_ids: list[str]
    skus: list[str]
    cats: list[str]
    qty: list[int]
    base: list[int]
    """Unit price before any promotion (catalog or override)."""
    unit: list[int]
    """Unit price after markdowns and tier prices."""
    net: list[int]
    """Line net so far."""
    earns: list[bool]
    expiry: list[int | None]
    allocs: list[list[Any]]
    applied: list[list[Rule]]

    def __init__(self, now: int, offset_min: int, store_id: str) -> None:
        self.now = now
        local = now + offset_min * 60_000
        days = local // _DAY_MS
        self.local_days = days
        self.weekday = (days + 3) % 7 + 1  # 1970-01-01 was a Thursday (ISO 4)
        self.minute = (local - days * _DAY_MS) // 60_000
        self.month_day = 0  # computed on first use: most rulesets never ask
        self.store_id = store_id
        self.tier: str | None = None
        self.has_member = False
        self.coupons: frozenset[str] = frozenset()
        self.ok_cache: dict[tuple[str, bool, frozenset[str]], list[bool]] = {}
        """Per rule profile, which lines it may touch; valid while ``net`` and ``applied``
        stay put, so the engine empties it before each phase builds its options."""

    def local_month_day(self) -> int:
        if not self.month_day:
            from datetime import date

            self.month_day = date.fromordinal(_EPOCH_ORDINAL + self.local_days).day
        return self.month_day


class Rule:
    """A compiled promotion. Subclasses add their parameters."""

    __slots__ = (
        "all_groups",
        "always",
        "c",
        "cats",
        "combines",
        "everything",
        "excl",
        "group",
        "id",
        "kind",
        "ordinal",
        "phase",
        "priority",
        "profile",
        "promo",
        "skus",
    )
    phase_of = 0

    def __init__(self, promo: Any, scope: Scope | None) -> None:
        self.promo = promo
        self.id: str = promo.id
        self.kind: str = promo.kind
        self.phase: int = self.phase_of
        self.priority: int = promo.priority
        self.group: str = promo.group or promo.id
        self.all_groups = "*" in promo.combines_with
        self.combines = frozenset(promo.combines_with)
        # what compatible() reads: rules with equal profiles accept the same lines
        self.profile = (self.group, self.all_groups, self.combines)
        self.ordinal = 0
        scope = scope or Scope()
        self.skus = frozenset(scope.skus)
        self.cats = frozenset(scope.categories)
        self.excl = frozenset(scope.exclude_skus)
        self.everything = scope.everything
        c: Conditions = promo.conditions
        self.c = c
        self.always = c == Conditions()

    def sort_key(self) -> tuple[int, int, str]:
        return (self.phase, self.priority, self.id)

    def matches(self, sku: str, cat: str) -> bool:
        if sku in self.excl:
            return False
        return self.everything or sku in self.skus or cat in self.cats

    def active(self, st: State) -> bool:
        """Do the conditions hold for this call (time, store, member)?"""
        if self.always:
            return True
        c = self.c
        if c.valid_from_ms is not None and st.now < c.valid_from_ms:
            return False
        if c.valid_until_ms is not None and st.now >= c.valid_until_ms:
            return False
        if c.stores and st.store_id not in c.stores:
            return False
        if (c.member_only or c.tiers) and not st.has_member:
            return False
        if c.tiers and st.tier not in c.tiers:
            return False
        if c.weekdays and st.weekday not in c.weekdays:
            return False
        if c.month_days and st.local_month_day() not in c.month_days:
            return False
        if c.time_from_min is not None and c.time_until_min is not None:
            lo, hi, m = c.time_from_min, c.time_until_min, st.minute
            if lo <= hi:
                if not lo <= m < hi:
                    return False
            elif hi <= m < lo:  # window wraps midnight, e.g. 22:00-02:00
                return False
        return True


def compatible(a: Rule, b: Rule) -> bool:
    """May ``a`` and ``b`` discount the same line? Both sides must allow it."""
    if a.group == b.group:
        return False
    return (a.all_groups or b.group in a.combines) and (b.all_groups or a.group in b.combines)


def line_allows(st: State, i: int, rule: Rule) -> bool:
    """Is ``rule`` compatible with everything already applied to line ``i``?"""
    for other in st.applied[i]:
        if not compatible(other, rule):
            return False
    return True


class OptionRule(Rule):
    """A rule of phases 3-5: it offers at most one ``Option`` per basket."""

    __slots__ = ()

    def option(self, st: State, slots: list[list[int]]) -> Option | None:
        raise NotImplementedError


class Option:
    """One way a rule could apply to this basket: what it is worth and which lines it uses."""

    __slots__ = ("detail", "lines", "mask", "rule", "times", "value", "weights")

    def __init__(
        self,
        rule: Rule,
        value: int,
        lines: list[int],
        weights: list[int],
        times: int,
        detail: str,
    ) -> None:
        self.rule = rule
        self.value = value
        self.lines = lines
        self.weights = weights
        mask = 0
        for i in lines:
            mask |= 1 << i
        self.mask = mask
        self.times = times
        self.detail = detail
