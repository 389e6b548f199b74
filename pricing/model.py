"""Inputs of ``price()``: catalog, basket, member, store.

All are frozen pydantic models that round-trip through JSON exactly. Money fields are
strict ints (``5.0`` and ``"5"`` are refused) in minor units of the document's currency;
times are UTC epoch milliseconds, like everywhere else in storefleet.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

Minor = Annotated[int, Strict(), Field(ge=0)]
"""A non-negative amount of minor units."""
Count = Annotated[int, Strict(), Field(ge=1)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
EpochMs = Annotated[int, Strict()]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def canonical_json(model: BaseModel) -> str:
    """Sorted keys, no whitespace, UTF-8: the form every hash is taken over."""
    return json.dumps(
        model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def sha256_of(model: BaseModel) -> str:
    return hashlib.sha256(canonical_json(model).encode()).hexdigest()


class Item(Frozen):
    sku: Annotated[str, Field(min_length=1)]
    name: str = ""
    category: str = ""
    price: Minor
    earns_points: bool = True


class Catalog(Frozen):
    """A price book snapshot: items by sku, in one currency."""

    version: Annotated[int, Strict(), Field(ge=0)]
    currency: Currency
    items: dict[str, Item]

    @model_validator(mode="after")
    def _keys_are_skus(self) -> Catalog:
        for key, item in self.items.items():
            if key != item.sku:
                raise ValueError(f"catalog key {key!r} holds item {item.sku!r}")
        return self

    @classmethod
    def of(cls, items: list[Item], *, version: int, currency: str) -> Catalog:
        return cls(version=version, currency=currency, items={i.sku: i for i in items})

    @cached_property
    def _hash(self) -> str:
        return sha256_of(self)

    def ruleset_hash(self) -> str:
        """sha256 of the canonical JSON; computed once per catalog object."""
        return self._hash


class Line(Frozen):
    line_id: Annotated[str, Field(min_length=1)]
    sku: Annotated[str, Field(min_length=1)]
    qty: Count
    unit_price: Minor | None = None
    """Price override (scale label, manager override); the catalog price otherwise."""
    best_before_ms: EpochMs | None = None
    """Best-before time of this lot, for near-expiry markdowns."""


class Basket(Frozen):
    id: str = ""
    currency: Currency
    lines: tuple[Line, ...]
    coupons: tuple[str, ...] = ()
    """Coupon codes presented at the till."""
    points_to_redeem: Annotated[int, Strict(), Field(ge=0)] = 0
    """Points the shopper asks to pay with; the engine applies the caps."""
    stored_value_to_use: Minor = 0
    """Stored value the shopper asks to pay with; the engine applies the caps."""


class Member(Frozen):
    id: Annotated[str, Field(min_length=1)]
    tier: str | None = None
    currency: Currency
    points_balance: Annotated[int, Strict(), Field(ge=0)] = 0
    stored_value_balance: Minor = 0


class Store(Frozen):
    """Where the sale happens. The offset is fixed per call (the store box updates it at
    DST changes), so cloud, POS and cart agree without sharing a tz database."""

    id: Annotated[str, Field(min_length=1)]
    currency: Currency
    utc_offset_min: Annotated[int, Strict(), Field(ge=-14 * 60, le=14 * 60)] = 0


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
