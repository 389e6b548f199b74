"""Loyalty in the cloud: service functions over SQLAlchemy sessions (no HTTP here).

Modules, one concern each:

==================  ===============================================================
``members``         create / find members (keyed phone hash)
``points``          the append-only points ledger: credit, spend, take_back, expire_due
``tiers``           tiers over a rolling window; their benefits as engine promotions
``coupons``         campaigns, issuing, single-use redemption
``stored_value``    stored-value ledger that never goes negative
``distribution``    referral coupons, two-level commissions, ``settle_commissions``
``ingest``          the ingest hook applying ``sale`` / ``refund`` events
``sale``            the shape of ``sale`` / ``refund`` event data
==================  ===============================================================

Every function takes the caller's session and never commits: the caller owns the
transaction (a writer session: ``BEGIN IMMEDIATE`` on SQLite).
"""

from cloud.loyalty.errors import (
    Conflict,
    CouponUnusable,
    InsufficientBalance,
    LoyaltyError,
    NotConfigured,
    NotFound,
)
from cloud.loyalty.metrics import LoyaltyMetrics
from cloud.loyalty.program import LoyaltyProgram

__all__ = [
    "Conflict",
    "CouponUnusable",
    "InsufficientBalance",
    "LoyaltyError",
    "LoyaltyMetrics",
    "LoyaltyProgram",
    "NotConfigured",
    "NotFound",
]
