"""Counters of provisioning, enrolment and revocation (decision 0035)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class EnrolmentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions = Counter(
            "storefleet_enrolment_actions_total",
            "Provision, enrol and revoke calls by outcome (ok, or the refusal's reason)",
            ["action", "outcome"], registry=registry)
