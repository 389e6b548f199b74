"""Member tier prices: a member price or a member percent per unit, for given tiers."""

from __future__ import annotations

from pricing.promotions import TierPrice
from tests.pricing.reference.rules.base import TIER
from tests.pricing.reference.rules.markdown import UnitRule


class TierRule(UnitRule):
    __slots__ = ()
    phase_of = TIER

    def __init__(self, promo: TierPrice) -> None:
        super().__init__(promo, promo.scope)
