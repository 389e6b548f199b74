"""storefleet pricing: one pure, deterministic pricing and promotion engine.

The cloud, the offline POS and the cart screen all call the same function (compiled
to C when built, ``pricing.native``; ``pricing.engine`` is the reference)::

    ruleset = compile(snapshot)                       # once per promotion snapshot
    priced = price(basket, catalog, ruleset, member, now_ms, store)
    back = refund(priced, {"line-1": 1})

No I/O, no clock reads, no randomness, no global state. Money is integer minor units;
see ``pricing.money`` for the rounding rule and ``docs/decisions/0004-pricing-engine.md``
for phases, combination rules and the best-price search bound.
"""

from pricing import engine, native
from pricing.errors import (
    CurrencyMismatch,
    InvalidBasket,
    InvalidPromotion,
    InvalidRefund,
    PricingError,
    UnknownSku,
)
from pricing.model import Basket, Catalog, Item, Line, Member, Store
from pricing.promotions import (
    Bundle,
    BundleComponent,
    BuyXGetY,
    Conditions,
    Coupon,
    Gift,
    Markdown,
    PointsEarn,
    PointsTender,
    Promotion,
    Scope,
    StoredValueTender,
    Threshold,
    TierPrice,
    check_promotion,
)
from pricing.refund import refund
from pricing.result import Allocation, Applied, PricedBasket, PricedLine, RefundLine, RefundResult
from pricing.ruleset import Ruleset, compile
from pricing.snapshot import ENGINE_VERSION, PromotionSnapshot, load_snapshot

ENGINE_IMPL = native.ENGINE_IMPL
"""``compiled`` or ``python``: the implementation ``price`` is (``pricing.native``)."""
price = native.compiled.price if ENGINE_IMPL == "compiled" else engine.price  # type: ignore[union-attr]

__all__ = [
    "ENGINE_IMPL",
    "ENGINE_VERSION",
    "Allocation",
    "Applied",
    "Basket",
    "Bundle",
    "BundleComponent",
    "BuyXGetY",
    "Catalog",
    "Conditions",
    "Coupon",
    "CurrencyMismatch",
    "Gift",
    "InvalidBasket",
    "InvalidPromotion",
    "InvalidRefund",
    "Item",
    "Line",
    "Markdown",
    "Member",
    "PointsEarn",
    "PointsTender",
    "PricedBasket",
    "PricedLine",
    "PricingError",
    "Promotion",
    "PromotionSnapshot",
    "RefundLine",
    "RefundResult",
    "Ruleset",
    "Scope",
    "Store",
    "StoredValueTender",
    "Threshold",
    "TierPrice",
    "UnknownSku",
    "check_promotion",
    "compile",
    "load_snapshot",
    "price",
    "refund",
]
