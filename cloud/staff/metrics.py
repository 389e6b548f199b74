"""Prometheus metrics of the staff assistant, registered on the registry passed in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class StaffMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.joins = Counter(
            "storefleet_staff_joins", "Members who joined with an assistant's join code, "
            "by result (created, replayed: the same join_id again)", ["result"],
            registry=registry)
        self.refused = Counter(
            "storefleet_staff_refused", "Staff requests refused, by reason (join_forged, "
            "join_expired, code_replayed, not_lapsed, unknown_assistant, ...)", ["reason"],
            registry=registry)
        self.coupons = Counter(
            "storefleet_staff_coupons", "One-tap coupons for lapsed members, by result "
            "(issued, replayed: already given for this lapse)", ["result"],
            registry=registry)
        self.sales = Counter(
            "storefleet_staff_sales_indexed", "Sale events seen by the staff sales index, "
            "by result (indexed, duplicate, bad_sale)", ["result"], registry=registry)
