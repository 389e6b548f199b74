"""The loyalty programme's parameters (one frozen value, passed in, never global)."""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class LoyaltyProgram:
    points_ttl_days: int = 365
    """Points expire this long after they were earned."""
    tier_window_days: int = 365
    """Tiers come from points earned over this rolling window."""
    return_window_days: int = 30
    """Commissions stay pending this long after the sale (returns are accepted until then)."""
    commission_bp: int = 500
    """Level 1: the distributor who shared earns this share of what the buyer paid, as
    points (1 point per minor unit of commission, floored)."""
    invitation_bp: int = 100
    """Level 2: who recruited that distributor earns this share as an invitation reward."""
    referral_campaign: str = "referral"
    """Campaign whose coupons reward both sides of an "invite a friend"."""

    @property
    def points_ttl_ms(self) -> int:
        return self.points_ttl_days * DAY_MS

    @property
    def tier_window_ms(self) -> int:
        return self.tier_window_days * DAY_MS

    @property
    def return_window_ms(self) -> int:
        return self.return_window_days * DAY_MS
