"""``compile(snapshot) -> Ruleset``: promotions turned into indexed plain objects.

Built once per snapshot (the store box compiles when a new snapshot arrives; the cloud
keeps one per ruleset hash it re-prices with). At price time the engine only looks up
the rules indexed under the basket's skus and categories, so the cost of a call grows
with the promotions that could touch the basket, not with the size of the snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pricing import native
from pricing.errors import InvalidPromotion
from pricing.promotions import (
    Bundle,
    BuyXGetY,
    Coupon,
    Gift,
    Markdown,
    PointsEarn,
    PointsTender,
    Promotion,
    Scope,
    StoredValueTender,
    Threshold,
    TierPrice,
)
from pricing.rules.base import TIER, OptionRule, Rule
from pricing.rules.bundle import BundleRule
from pricing.rules.coupon import CouponRule
from pricing.rules.item import BuyXGetYRule, GiftRule
from pricing.rules.markdown import MarkdownRule, UnitRule
from pricing.rules.tender import EarnRule, PointsTenderRule, StoredValueRule
from pricing.rules.threshold import ThresholdRule
from pricing.rules.tier import TierRule
from pricing.snapshot import PromotionSnapshot

Entry = tuple[Rule, int, frozenset[str]]
"""An index entry: the rule, which of its scopes matched (slot), that scope's exclusions."""

LineRules = tuple[tuple[UnitRule, ...], tuple[tuple[int, int, OptionRule], ...]]
"""Every rule that can touch a line of one (sku, category), exclusions applied: the unit
rules (phases 1-2) by ordinal, and ``(ordinal, slot, rule)`` for the option rules indexed
by sku or category (basket-wide ones are in ``Ruleset.everywhere_options``), each (rule,
slot) once."""


class Ruleset:
    """A compiled snapshot. Immutable by convention: nothing mutates it after compile."""

    __slots__ = (
        "by_cat",
        "by_sku",
        "coupons",
        "currency",
        "earn",
        "everywhere",
        "everywhere_options",
        "hash",
        "line_rules_cache",
        "native",
        "points_tender",
        "rules",
        "slots",
        "stored_value",
        "version",
    )

    def __init__(self, snapshot: PromotionSnapshot, rules: list[Rule]) -> None:
        self.version = snapshot.version
        self.currency = snapshot.currency
        self.hash = snapshot.ruleset_hash()
        self.rules = tuple(sorted(rules, key=Rule.sort_key))
        for ordinal, rule in enumerate(self.rules):
            rule.ordinal = ordinal
        by_sku: dict[str, list[Entry]] = {}
        by_cat: dict[str, list[Entry]] = {}
        everywhere: list[Entry] = []
        coupons: dict[str, list[CouponRule]] = {}
        slots: list[int] = []
        self.earn: tuple[EarnRule, ...] = ()
        self.points_tender: tuple[PointsTenderRule, ...] = ()
        self.stored_value: tuple[StoredValueRule, ...] = ()
        for rule in self.rules:
            scopes = _index_scopes(rule)
            slots.append(len(scopes))
            if isinstance(rule, CouponRule):
                coupons.setdefault(rule.code, []).append(rule)
            elif isinstance(rule, EarnRule):
                self.earn += (rule,)
            elif isinstance(rule, PointsTenderRule):
                self.points_tender += (rule,)
            elif isinstance(rule, StoredValueRule):
                self.stored_value += (rule,)
            for slot, scope in enumerate(scopes):
                entry = (rule, slot, frozenset(scope.exclude_skus))
                if scope.everything:
                    everywhere.append(entry)
                for sku in scope.skus:
                    by_sku.setdefault(sku, []).append(entry)
                for cat in scope.categories:
                    by_cat.setdefault(cat, []).append(entry)
        self.by_sku = {k: tuple(v) for k, v in by_sku.items()}
        self.by_cat = {k: tuple(v) for k, v in by_cat.items()}
        self.everywhere = tuple(everywhere)
        # basket-wide option rules match (nearly) every line: the engine fills their
        # slot once per call instead of once per line, so line_rules leaves them out
        self.everywhere_options = tuple(e for e in everywhere if e[0].phase > TIER)
        self.coupons = {k: tuple(v) for k, v in coupons.items()}
        self.slots = tuple(slots)
        self.line_rules_cache: dict[tuple[str, str], LineRules] = {}
        # the same rules as C structs, for the compiled engine (pricing.native); derived
        # from this object alone, like line_rules_cache
        self.native: Any = native.build(self)

    def line_rules(self, sku: str, category: str) -> LineRules:
        """The rules that can touch a line of ``sku`` in ``category`` (cached per pair).

        Derived from the ruleset alone (the category comes from the call's catalog), so
        the cache is keyed by (sku, category), never by a basket, and holds at most one
        entry per catalog item. Filling it twice with the same value is harmless, so
        threads sharing a ruleset need no lock.
        """
        key = (sku, category)
        found = self.line_rules_cache.get(key)
        if found is not None:
            return found
        unit: list[UnitRule] = []
        opts: list[tuple[int, int, OptionRule]] = []
        seen: set[tuple[int, int]] = set()
        for entries in (self.by_sku.get(sku, ()), self.by_cat.get(category, ()), self.everywhere):
            for rule, slot, excl in entries:
                if sku in excl or (entries is self.everywhere and rule.phase > TIER):
                    continue
                if rule.phase <= TIER:
                    assert isinstance(rule, UnitRule)
                    if rule not in unit:
                        unit.append(rule)
                elif (rule.ordinal, slot) not in seen:
                    assert isinstance(rule, OptionRule)
                    seen.add((rule.ordinal, slot))
                    opts.append((rule.ordinal, slot, rule))
        unit.sort(key=lambda r: r.ordinal)
        found = self.line_rules_cache[key] = (tuple(unit), tuple(opts))
        return found


def _index_scopes(rule: Rule) -> tuple[Scope, ...]:
    if isinstance(rule, CouponRule | EarnRule | PointsTenderRule | StoredValueRule):
        return ()  # found by code, or evaluated for every basket
    index_scopes = getattr(rule, "index_scopes", None)
    if index_scopes is not None:
        scopes: tuple[Scope, ...] = index_scopes()
        return scopes
    return (rule.promo.scope,)


def _compile_one(promo: Promotion) -> Rule:
    if isinstance(promo, Markdown):
        return MarkdownRule(promo)
    if isinstance(promo, TierPrice):
        return TierRule(promo)
    if isinstance(promo, BuyXGetY):
        return BuyXGetYRule(promo)
    if isinstance(promo, Bundle):
        return BundleRule(promo)
    if isinstance(promo, Gift):
        return GiftRule(promo)
    if isinstance(promo, Threshold):
        return ThresholdRule(promo)
    if isinstance(promo, Coupon):
        return CouponRule(promo)
    if isinstance(promo, PointsEarn):
        return EarnRule(promo)
    if isinstance(promo, PointsTender):
        return PointsTenderRule(promo)
    if isinstance(promo, StoredValueTender):
        return StoredValueRule(promo)
    raise InvalidPromotion(getattr(promo, "id", None), f"unknown kind {type(promo).__name__}")


def compile(
    promotions: PromotionSnapshot | Iterable[Promotion],
    *,
    version: int = 0,
    currency: str | None = None,
) -> Ruleset:
    """Compile a snapshot (or a list of promotions plus ``version`` and ``currency``)."""
    if not isinstance(promotions, PromotionSnapshot):
        if currency is None:
            raise InvalidPromotion(None, "a list of promotions needs a currency")
        promotions = PromotionSnapshot(
            version=version, currency=currency, promotions=tuple(promotions)
        )
    return Ruleset(promotions, [_compile_one(p) for p in promotions.promotions])
