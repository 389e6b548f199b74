"""Errors raised by the pricing engine.

One base class (a ``protocols.errors.StorefleetError``, the root every package's errors
share); every subclass carries its context as attributes::

    PricingError                      anything the engine refuses to price
     +-- UnknownSku(sku, line_id)      a basket line names a sku the catalog lacks
     +-- CurrencyMismatch(expected, found, where)
     |                                 basket, catalog, store, member or snapshot disagree
     +-- InvalidPromotion(promotion_id, reason, field)
     |                                 a promotion or snapshot that cannot be priced from,
     |                                 or a promotion that could never apply
     |                                 (``promotions.check_promotion``; ``field`` names it)
     +-- InvalidBasket(reason, line_id)
     |                                 duplicate line ids, a price override in another
     |                                 currency, and other baskets that make no sense
     +-- InvalidRefund(reason, line_id)
                                       returning more than was sold, an unknown line,
                                       units that are not a whole number

pydantic's ``ValidationError`` is converted to ``InvalidPromotion`` where snapshots are
loaded from JSON (``snapshot.load_snapshot``), so callers catch one tree.
"""

from __future__ import annotations

from protocols.errors import StorefleetError


class PricingError(StorefleetError):
    """Base of every error the pricing package raises."""

    reason = "pricing_error"


class UnknownSku(PricingError):
    def __init__(self, sku: str, *, line_id: str | None = None) -> None:
        self.sku = sku
        self.line_id = line_id
        super().__init__(f"unknown sku {sku!r}" + (f" on line {line_id!r}" if line_id else ""))


class CurrencyMismatch(PricingError):
    def __init__(self, *, expected: str, found: str, where: str) -> None:
        self.expected = expected
        self.found = found
        self.where = where
        super().__init__(f"currency mismatch in {where}: expected {expected}, found {found}")


class InvalidPromotion(PricingError):
    def __init__(self, promotion_id: str | None, reason: str, *,
                 field: str | None = None) -> None:
        self.promotion_id = promotion_id
        self.reason = reason
        self.field = field
        where = f"{field}: " if field else ""
        super().__init__(f"invalid promotion {promotion_id!r}: {where}{reason}")


class InvalidBasket(PricingError):
    def __init__(self, reason: str, *, line_id: str | None = None) -> None:
        self.reason = reason
        self.line_id = line_id
        super().__init__(reason + (f" (line {line_id!r})" if line_id else ""))


class InvalidRefund(PricingError):
    def __init__(self, reason: str, *, line_id: str | None = None) -> None:
        self.reason = reason
        self.line_id = line_id
        super().__init__(reason + (f" (line {line_id!r})" if line_id else ""))
