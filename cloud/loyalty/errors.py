"""Errors of cloud.loyalty (routes map them to problem+json once, in one table).

    LoyaltyError                 base (a CloudError)
     +-- NotFound                ``what`` with ``key`` does not exist
     +-- Conflict                the request contradicts stored data (duplicate phone,
     |                           an idempotency key reused for another operation)
     +-- InsufficientBalance     points or stored value (``unit``) would go negative
     +-- CouponUnusable          ``reason``: redeemed | expired | wrong_member | inactive
     +-- NotConfigured           a setting the operation needs is missing (``what``)
"""

from __future__ import annotations

from cloud.errors import CloudError


class LoyaltyError(CloudError):
    """Base error of cloud.loyalty."""


class NotFound(LoyaltyError):
    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"{what} {key!r} not found")
        self.what = what
        self.key = key


class Conflict(LoyaltyError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InsufficientBalance(LoyaltyError):
    def __init__(self, member_id: str, *, unit: str, wanted: int, available: int) -> None:
        super().__init__(f"member {member_id}: {wanted} {unit} wanted, {available} available")
        self.member_id = member_id
        self.unit = unit
        self.wanted = wanted
        self.available = available


class CouponUnusable(LoyaltyError):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"coupon {code!r}: {reason}")
        self.code = code
        self.reason = reason


class NotConfigured(LoyaltyError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not configured")
        self.what = what
