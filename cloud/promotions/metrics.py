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
            "Sales whose reported totals differ from the cloud's re-pricing, or whose "
            "money charged differs from the money recorded (charged_differs), each once",
            ["reason"], registry=registry,
        )
        self.unaudited = Counter(
            "storefleet_sales_unaudited",
            "Sales the cloud could not re-price, each once (no basket or snapshot version, "
            "other engine version, unknown snapshot, unpriceable basket, bad payload)",
            ["reason"], registry=registry,
        )
