"""Prometheus metrics of loyalty, registered on the registry passed in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class LoyaltyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.coupons_issued = Counter(
            "storefleet_loyalty_coupons_issued", "Coupons issued, by campaign trigger",
            ["trigger"], registry=registry,
        )
        self.redemptions = Counter(
            "storefleet_loyalty_coupon_redemptions", "Coupon redemption attempts, by result",
            ["result"], registry=registry,
        )
        self.rejected = Counter(
            "storefleet_loyalty_rejected",
            "Loyalty inputs refused (bad sale payloads, unknown members, short balances)",
            ["reason"], registry=registry,
        )
        self.commissions = Counter(
            "storefleet_loyalty_commissions", "Commission state changes", ["status"],
            registry=registry,
        )
