"""Cart checkouts recorded as till sales: the cart is one more lane of the store's POS.

Paying on the cart screen makes a ``sale`` through ``edge_agent.pos.sales.PosService``
(channel ``cart``): the till's ledger (``pos.db``, so a range coupon used on a cart
cannot be used again at a lane), its outbox path (``sale`` + ``coupon_redeemed``
events, the till's event shapes, re-priced by the cloud) and its pricing path. The sale
id is the checkout id, so a payment confirmation delivered twice records one sale. The
events come from the cart fleet's device (``CART_TILL_ID``); the sale's ``till_id`` and
its receipt name the cart it was paid at (``sell(till_id=cart_id)``).

The cart PosService prices with exactly what the cart screen priced with (``CartPricing``
over ``InAisle.pricing_inputs``: the till's verified caches, else the offline bundle),
so the payment QR, the sale and the e-receipt carry the same total. Codes the trigger
ledger issued from bundle ranges (no cloud range behind them) are resolved by
``CartRanges`` after the till's own ``RangeCache``.

    till = cart_till(in_aisle, ledger=pos.ledger, sink=ctx, clock=clock, metrics=metrics,
                     online=lambda: uplink.connected, till_ranges=pos.ranges)
    in_aisle.use_till(till)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from edge_agent.inference.triggers.ledger import CodeRange
from edge_agent.pos.cache import CloudApi
from edge_agent.pos.ledger import PosLedger
from edge_agent.pos.sales import EventSink, PosMetrics, PosService, RangeLookup
from pricing import Catalog, PromotionSnapshot, Ruleset
from protocols.clock import Clock

if TYPE_CHECKING:
    from edge_agent.cartscreen.runtime import InAisle

CART_CHANNEL = "cart"
CART_TILL_ID = "carts"  # the cart fleet's device id in the agent's devices

PricingInputs = Callable[[], tuple[Catalog, PromotionSnapshot, Ruleset] | None]


class CartPricing:
    """``Rulesets`` and ``CatalogSource`` for the cart PosService: one source for both,
    so the catalog and the rules always come from the same place."""

    def __init__(self, inputs: PricingInputs) -> None:
        self._inputs = inputs

    def ruleset(self, channel: str = CART_CHANNEL) -> tuple[PromotionSnapshot, Ruleset] | None:
        got = self._inputs()
        return None if got is None else (got[1], got[2])

    @property
    def catalog(self) -> Catalog | None:
        got = self._inputs()
        return None if got is None else got[0]


class CartRanges:
    """The till's ranges first (cloud-allocated, with their range ids), then the ranges
    the trigger ledger was seeded with from the offline bundle."""

    def __init__(self, local: Callable[[], Sequence[CodeRange]],
                 till: RangeLookup | None = None) -> None:
        self._local = local
        self._till = till

    def lookup(self, code: str, *, now_ms: int) -> dict[str, Any] | None:
        if self._till is not None and (found := self._till.lookup(code, now_ms=now_ms)):
            return found
        for r in self._local():
            serial = code[len(r.prefix):] if code.startswith(r.prefix) else ""
            if serial.isdigit() and r.start <= int(serial) < r.end and now_ms < r.expires_ms:
                return {"range_id": f"{r.prefix}{r.start}", "prefix": r.prefix,
                        "engine_code": r.engine_code, "expires_ms": r.expires_ms}
        return None


def cart_till(in_aisle: InAisle, *, ledger: PosLedger, sink: EventSink, clock: Clock,
              metrics: PosMetrics, online: Callable[[], bool],
              till_ranges: RangeLookup | None = None, api: CloudApi | None = None,
              currency: str = "EUR", utc_offset_min: int = 0) -> PosService:
    """The PosService that records the carts' checkouts (no printer: the e-receipt is on
    the screen). Pass the till's ``ledger`` so coupon codes are single-use store-wide."""
    pricing = CartPricing(in_aisle.pricing_inputs)
    # Price in the catalog's currency when there is one: the cart screen does.
    currency = pricing.catalog.currency if pricing.catalog is not None else currency
    return PosService(
        store_id=in_aisle.settings.store_id, ledger=ledger, promotions=pricing,
        catalog=pricing, ranges=CartRanges(lambda: in_aisle.ranges, till_ranges), sink=sink,
        clock=clock, metrics=metrics, online=online, api=api, currency=currency,
        utc_offset_min=utc_offset_min, till_id=CART_TILL_ID, channel=CART_CHANNEL)
