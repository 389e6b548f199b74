"""Coupon triggers: the right coupon on the cart screen at the shelf, issued offline.

- ``engine.TriggerEngine``: the pure rules engine (indexed by zone and shelf);
- ``ledger.CouponLedger``: pre-allocated code ranges and the issue ledger (SQLite);
- ``storemap.StoreMap`` / ``BeaconLocator``: the layout and the positioning fallback;
- ``service.TriggerService``: scan reports in, coupons to the screen and the outbox.

Rules are ``protocols.triggers.TriggerRule``; see docs/decisions (coupon triggers).
"""

from edge_agent.inference.triggers.engine import Decision, Shopper, TriggerEngine
from edge_agent.inference.triggers.errors import NoCodesLeft, TriggerError
from edge_agent.inference.triggers.ledger import CodeRange, CouponLedger, IssuedCoupon
from edge_agent.inference.triggers.service import (
    MemberProfile,
    StaticMembers,
    TriggerService,
)
from edge_agent.inference.triggers.storemap import BeaconLocator, Location, StoreMap

__all__ = [
    "BeaconLocator",
    "CodeRange",
    "CouponLedger",
    "Decision",
    "IssuedCoupon",
    "Location",
    "MemberProfile",
    "NoCodesLeft",
    "Shopper",
    "StaticMembers",
    "StoreMap",
    "TriggerEngine",
    "TriggerError",
    "TriggerService",
]
