"""Prometheus metrics of orders and offline coupon reconciliation (registry injected)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class OrderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.placed = Counter(
            "storefleet_orders_placed", "online orders routed to a store", ["fulfilment"],
            registry=registry)
        self.rejected = Counter(
            "storefleet_orders_rejected",
            "order requests refused (no_store, idempotency_conflict, invalid)", ["reason"],
            registry=registry)
        self.dispatch = Counter(
            "storefleet_orders_dispatch", "order dispatches to stores by result", ["result"],
            registry=registry)
        self.status_events = Counter(
            "storefleet_order_status_events",
            "order_status events by outcome (applied, noop, duplicate, illegal, "
            "wrong_store, unknown_order, bad_payload)", ["outcome"], registry=registry)
        self.coupon_flags = Counter(
            "storefleet_offline_coupon_flags",
            "offline range-coupon redemptions flagged (double_use, not_allocated, expired, "
            "bad_payload)", ["reason"], registry=registry)
        self.coupon_redemptions = Counter(
            "storefleet_offline_coupon_redemptions",
            "offline range-coupon redemptions accepted", registry=registry)
