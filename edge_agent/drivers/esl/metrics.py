"""Prometheus metrics of the ESL driver, one set per registry (several access points
share the agent's registry; a second set of the same names would be rejected)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from edge_agent.metrics import registry_scoped


class EslMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.labels = Gauge(
            "storefleet_esl_labels", "labels by convergence state (pending, acked, stale)",
            ["device_id", "state"], registry=registry,
        )
        self.jobs = Counter(
            "storefleet_esl_jobs_sent", "label jobs handed to the access point (new, retry)",
            ["device_id", "kind"], registry=registry,
        )
        self.acks = Counter(
            "storefleet_esl_acks", "label acknowledgements by result",
            ["device_id", "result"], registry=registry,
        )
        self.bad = Counter(
            "storefleet_esl_bad_messages", "rejected or dropped messages from an access point",
            ["device_id", "reason"], registry=registry,
        )
        self.price_book = Gauge(
            "storefleet_esl_price_book_version", "price book version the labels converge to",
            ["device_id"], registry=registry,
        )


def esl_metrics(registry: CollectorRegistry) -> EslMetrics:
    return registry_scoped(registry, "esl", EslMetrics)
