"""Prometheus metrics of promotions, registered on the registry passed in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class PromotionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "storefleet_promotions_published", "Promotion versions published",
            registry=registry,
        )
        self.repriced = Counter(
            "storefleet_repriced_sales", "Sales the cloud re-priced", registry=registry,
        )
        self.mismatches = Counter(
            "storefleet_reprice_mismatches",
            "Sales whose reported totals differ from the cloud's re-pricing (or could "
            "not be re-priced: unknown snapshot, unpriceable basket)",
            ["reason"], registry=registry,
        )
        self.skipped = Counter(
            "storefleet_reprice_skipped", "Sales not re-priced (no basket, other engine)",
            ["reason"], registry=registry,
        )
