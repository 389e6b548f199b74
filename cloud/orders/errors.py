"""Errors of online orders and offline coupon ranges.

    OrderError                  base of everything raised here (a ``StorefleetError``)
     +-- InvalidOrder           a request the service refuses (``detail``)
     +-- NoStoreAvailable       no store accepting orders has every line in stock
     |                          (``missing``: sku -> units short at the nearest store)
     +-- IdempotencyConflict    the idempotency key was used for a different request
     +-- UnknownOrder           no such order / range / store location (``what``, ``key``)
     +-- Unpriceable            the routed store's price book or promotions cannot price
     |                          the order (``reason``: unknown_sku, no_price_book,
     |                          currency, coupon_unusable)
     +-- PaymentRefused         a payment notice refused (``outcome``, ``status``)

Routes map them to problem+json (422, 409, 409, 404, 422, ``status``).
"""

from __future__ import annotations

from protocols.errors import StorefleetError


class OrderError(StorefleetError):
    """Base error of cloud.orders."""

    reason = "order_error"


class InvalidOrder(OrderError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NoStoreAvailable(OrderError):
    def __init__(self, detail: str, *, candidates: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.candidates = candidates


class IdempotencyConflict(OrderError):
    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} was already used for a different order")
        self.key = key


class UnknownOrder(OrderError):
    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"no {what} {key!r}")
        self.what = what
        self.key = key


class Unpriceable(OrderError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class PaymentRefused(OrderError):
    """``outcome`` labels the metric; ``status`` is the HTTP answer the gateway gets
    (a refused notice is not a payment: the gateway reverses it)."""

    def __init__(self, outcome: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.status = status
        self.detail = detail
