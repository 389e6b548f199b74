"""The ingest post-commit hooks of this package, registered in one call."""

from __future__ import annotations

from cloud.ingest.hooks import PostCommitHooks
from cloud.orders.coupon_ranges import RangeRedemptionHook
from cloud.orders.metrics import OrderMetrics
from cloud.orders.status import OrderStatusHook


def register(hooks: PostCommitHooks, *, metrics: OrderMetrics) -> None:
    hooks.register("orders", {"order_status"}, OrderStatusHook(metrics=metrics))
    hooks.register("coupon-ranges", {"coupon_redeemed"}, RangeRedemptionHook(metrics=metrics))
