"""Outputs: ``PricedBasket`` and ``RefundResult``, with their lines.

Immutable typed records (``NamedTuple``: building twenty frozen dataclasses per basket
costs more than the rest of pricing; a NamedTuple is a quarter of that). They serialize
with ``to_dict()`` / ``to_json()`` and load back with ``from_dict()`` / ``from_json()``
exactly, so a POS can store the priced sale and refund from it later.

All amounts are ints in minor units of ``currency``.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple


class Allocation(NamedTuple):
    """The part of one promotion's discount that landed on one line."""

    promotion_id: str
    phase: str
    amount: int


class PricedLine(NamedTuple):
    line_id: str
    sku: str
    qty: int
    unit_price: int
    """Catalog price or the line's override, before any promotion."""
    gross: int
    discounts: tuple[Allocation, ...]
    net: int
    """gross - sum(discounts): what the line costs."""
    stored_value: int
    points_value: int
    points_used: int
    paid: int
    """net - stored_value - points_value: what is left to pay in money."""
    points_earned: int


class Applied(NamedTuple):
    """What one promotion did to this basket."""

    promotion_id: str
    kind: str
    phase: str
    amount: int
    points: int
    times: int
    line_ids: tuple[str, ...]
    detail: str


class PricedBasket(NamedTuple):
    basket_id: str
    currency: str
    engine_version: str
    ruleset_version: int
    ruleset_hash: str
    catalog_version: int
    catalog_hash: str
    member_id: str | None
    lines: tuple[PricedLine, ...]
    """In canonical order: by sku, then line id."""
    subtotal: int
    discount: int
    total: int
    stored_value: int
    points_value: int
    points_used: int
    paid: int
    points_earned: int
    applied: tuple[Applied, ...]
    rejected_coupons: tuple[str, ...]
    """Codes presented that gave nothing (unknown, conditions not met, or beaten)."""
    exact: bool
    """False when a best-price search ran out of budget and kept its best-so-far."""

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["lines"] = [
            {**ln._asdict(), "discounts": [a._asdict() for a in ln.discounts]} for ln in self.lines
        ]
        d["applied"] = [{**a._asdict(), "line_ids": list(a.line_ids)} for a in self.applied]
        d["rejected_coupons"] = list(self.rejected_coupons)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PricedBasket:
        lines = tuple(
            PricedLine(**{**ln, "discounts": tuple(Allocation(**a) for a in ln["discounts"])})
            for ln in d["lines"]
        )
        applied = tuple(Applied(**{**a, "line_ids": tuple(a["line_ids"])}) for a in d["applied"])
        return cls(
            **{
                **d,
                "lines": lines,
                "applied": applied,
                "rejected_coupons": tuple(d["rejected_coupons"]),
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> PricedBasket:
        return cls.from_dict(json.loads(text))


class RefundLine(NamedTuple):
    line_id: str
    sku: str
    qty: int
    amount: int
    """Net value returned: paid + stored_value + points_value."""
    paid: int
    stored_value: int
    points_value: int
    points_returned: int
    """Points the shopper paid with, given back."""
    points_reversed: int
    """Points the sale earned, taken back."""
    discounts: tuple[Allocation, ...]


class RefundResult(NamedTuple):
    basket_id: str
    currency: str
    lines: tuple[RefundLine, ...]
    amount: int
    paid: int
    stored_value: int
    points_value: int
    points_returned: int
    points_reversed: int

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["lines"] = [
            {**ln._asdict(), "discounts": [a._asdict() for a in ln.discounts]} for ln in self.lines
        ]
        return d
