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
        # Decision 0067: priced and paid orders, stock kept true by the stores' events.
        self.payment_notices = Counter(
            "storefleet_order_payment_notices",
            "payment notices for online orders by outcome (paid, duplicate, bad_signature, "
            "bad_notice, unknown_order, amount_mismatch, replay, already_paid, cancelled, "
            "not_configured)", ["outcome"], registry=registry)
        self.points_earned = Counter(
            "storefleet_order_points_earned",
            "points credited to members for online orders handed over or delivered",
            registry=registry)
        self.stock_moves = Counter(
            "storefleet_stock_moves",
            "store events applied to stock, by kind and outcome (applied, duplicate, "
            "no_lines, order: an online order's goods, cabinet: a door-counted cabinet's, "
            "bad_payload)", ["kind", "outcome"],
            registry=registry)
        self.stock_stale = Counter(
            "storefleet_stock_stale_units",
            "units of store events older than the sku's last count (already in it)",
            registry=registry)
        self.stock_short = Counter(
            "storefleet_stock_short_units",
            "units a store sold beyond the cloud's stock level (floored at 0)",
            registry=registry)
