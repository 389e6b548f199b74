"""The ingest post-commit hooks of this package, registered in one call."""

from __future__ import annotations

from cloud.ingest.hooks import PostCommitHooks
from cloud.loyalty.ingest import LoyaltyHook
from cloud.orders.coupon_ranges import RangeRedemptionHook
from cloud.orders.earn import OrderEarner
from cloud.orders.metrics import OrderMetrics
from cloud.orders.status import OrderStatusHook
from cloud.orders.stock import KINDS as STOCK_KINDS
from cloud.orders.stock import StockHook


def register(hooks: PostCommitHooks, *, metrics: OrderMetrics,
             loyalty: LoyaltyHook | None = None) -> None:
    """``loyalty``: the hook that credits sales' points, so that an order handed over
    earns through it (decision 0067); without it orders earn nothing."""
    earn = OrderEarner(loyalty=loyalty, metrics=metrics) if loyalty is not None else None
    hooks.register("orders", {"order_status"}, OrderStatusHook(metrics=metrics, earn=earn))
    hooks.register("coupon-ranges", {"coupon_redeemed"}, RangeRedemptionHook(metrics=metrics))
    # Stock kept true by the stores' sales, refunds and vends (decision 0067).
    hooks.register("stock", STOCK_KINDS, StockHook(metrics=metrics))
