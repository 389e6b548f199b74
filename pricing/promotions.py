"""Promotion kinds, a discriminated union on ``kind``.

Every promotion has:
- ``priority`` (lower runs first; orders allocation and the greedy fallback, and breaks
  ties between equally good selections together with ``id``);
- ``group``, its exclusivity group (``""`` = a group of its own): two promotions of the
  same group never discount the same line;
- ``combines_with``, the groups it may share a line with (``("*",)`` = any group,
  ``()`` = none). Both sides must allow it, across phases too: a coupon with
  ``combines_with=()`` does not touch lines an earlier markdown discounted.
- ``conditions``: validity window, store-local weekdays / month days / time of day,
  stores, member-only and tiers.

Percentages are basis points (``percent_bp=1_000`` is 10 % off); amounts are minor units
of the snapshot's currency. Kinds by phase:

=========  =====================================================================
markdown   ``markdown`` (percent / amount off / new price per unit; optional
           near-expiry window on the line's best-before time)
tier       ``tier_price`` (member price or member percent per unit)
item       ``buy_x_get_y``, ``bundle`` (combo / multi-buy price), ``gift``
threshold  ``threshold`` (spend X get Y off, repeatable or once; member day = a
           threshold with ``min_spend=0`` and a weekday condition)
coupon     ``coupon`` (amount, percent, item via ``max_units``, threshold via
           ``min_spend``), applied only when its code is presented
tender     ``stored_value_tender``, ``points_tender`` (caps and rates), and
           ``points_earn`` (how many points the sale earns)
=========  =====================================================================
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from pricing.errors import InvalidPromotion
from pricing.model import Count, EpochMs, Frozen, Minor

BasisPoints = Annotated[int, Field(strict=True, ge=0, le=10_000)]


def _sorted_unique(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))


class Scope(Frozen):
    """Which lines a rule looks at. No skus and no categories = every line."""

    skus: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    exclude_skus: tuple[str, ...] = ()

    _norm = field_validator("skus", "categories", "exclude_skus")(_sorted_unique)

    @property
    def everything(self) -> bool:
        return not self.skus and not self.categories


class Conditions(Frozen):
    """When and for whom a promotion applies. Local times use ``Store.utc_offset_min``."""

    valid_from_ms: EpochMs | None = None
    valid_until_ms: EpochMs | None = None
    """Exclusive end."""
    weekdays: tuple[Annotated[int, Field(ge=1, le=7)], ...] = ()
    """ISO weekdays, store-local: 1 = Monday ... 7 = Sunday. Empty = any day."""
    month_days: tuple[Annotated[int, Field(ge=1, le=31)], ...] = ()
    time_from_min: Annotated[int, Field(ge=0, lt=1440)] | None = None
    """Minutes after local midnight, inclusive. A window may wrap midnight."""
    time_until_min: Annotated[int, Field(ge=0, le=1440)] | None = None
    """Minutes after local midnight, exclusive."""
    stores: tuple[str, ...] = ()
    member_only: bool = False
    tiers: tuple[str, ...] = ()
    """Member tiers the promotion is for (implies member-only). Empty = any shopper."""

    @field_validator("weekdays", "month_days")
    @classmethod
    def _norm_ints(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(v)))

    _norm = field_validator("stores", "tiers")(_sorted_unique)

    @model_validator(mode="after")
    def _time_pair(self) -> Conditions:
        if (self.time_from_min is None) != (self.time_until_min is None):
            raise ValueError("time_from_min and time_until_min go together")
        return self


class _Base(Frozen):
    id: Annotated[str, Field(min_length=1)]
    name: str = ""
    priority: Annotated[int, Field(strict=True)] = 100
    group: str = ""
    combines_with: tuple[str, ...] = ("*",)
    conditions: Conditions = Conditions()

    _norm = field_validator("combines_with")(_sorted_unique)


class _Benefit(_Base):
    """Exactly one of percent / amount off (and for markdowns, a new price)."""

    percent_bp: BasisPoints = 0
    amount_off: Minor = 0

    @model_validator(mode="after")
    def _one_benefit(self) -> _Benefit:
        given = (
            (self.percent_bp > 0)
            + (self.amount_off > 0)
            + (getattr(self, "new_price", None) is not None)
        )
        if given != 1:
            raise ValueError("give exactly one of percent_bp, amount_off, new_price")
        return self


class Markdown(_Benefit):
    kind: Literal["markdown"] = "markdown"
    scope: Scope
    new_price: Minor | None = None
    near_expiry_within_min: Annotated[int, Field(ge=0)] | None = None
    """Only lines whose best-before time is at most this many minutes after ``now``."""


class TierPrice(_Benefit):
    kind: Literal["tier_price"] = "tier_price"
    scope: Scope
    new_price: Minor | None = None

    @model_validator(mode="after")
    def _needs_tiers(self) -> TierPrice:
        if not self.conditions.tiers:
            raise ValueError("tier_price needs conditions.tiers")
        return self


class BuyXGetY(_Base):
    """Buy ``buy_qty`` of ``buy``, get ``get_qty`` of ``get`` (default: of ``buy``) at
    ``get_percent_bp`` off; the cheapest units are the ones discounted."""

    kind: Literal["buy_x_get_y"] = "buy_x_get_y"
    buy: Scope
    buy_qty: Count
    get: Scope | None = None
    get_qty: Count = 1
    get_percent_bp: BasisPoints = 10_000
    repeat: bool = True
    max_applications: Count | None = None

    @model_validator(mode="after")
    def _disjoint(self) -> BuyXGetY:
        if self.get is not None and (self.get.everything or self.buy.everything):
            raise ValueError("a different get-item needs explicit skus or categories")
        if self.get is not None and (
            set(self.get.skus) & set(self.buy.skus)
            or set(self.get.categories) & set(self.buy.categories)
        ):
            raise ValueError("get scope must not overlap buy scope (leave get empty)")
        return self


class BundleComponent(Frozen):
    scope: Scope
    qty: Count


class Bundle(_Base):
    """``components`` together for ``price`` (combo, or multi-buy with one component).
    The dearest eligible units are put into bundles."""

    kind: Literal["bundle"] = "bundle"
    components: Annotated[tuple[BundleComponent, ...], Field(min_length=1)]
    price: Minor
    repeat: bool = True
    max_applications: Count | None = None


class Gift(_Base):
    """Buy ``min_qty`` units or spend ``min_spend`` on ``trigger`` and ``gift_qty`` units
    of ``gift_sku`` in the basket are free. The gift must be scanned to be given."""

    kind: Literal["gift"] = "gift"
    trigger: Scope
    min_qty: Annotated[int, Field(ge=0)] = 0
    min_spend: Minor = 0
    gift_sku: Annotated[str, Field(min_length=1)]
    gift_qty: Count = 1
    repeat: bool = False

    @model_validator(mode="after")
    def _has_trigger(self) -> Gift:
        if self.min_qty == 0 and self.min_spend == 0:
            raise ValueError("gift needs min_qty or min_spend")
        if self.gift_sku in self.trigger.skus:
            raise ValueError("gift sku must not be its own trigger")
        return self


class Threshold(_Benefit):
    """Spend ``min_spend`` on ``scope``, get ``amount_off`` (per multiple when
    ``repeat``) or ``percent_bp`` off the scope's subtotal."""

    kind: Literal["threshold"] = "threshold"
    scope: Scope = Scope()
    min_spend: Minor = 0
    repeat: bool = False
    max_applications: Count | None = None

    @model_validator(mode="after")
    def _repeat_rules(self) -> Threshold:
        if self.repeat and (self.percent_bp or self.min_spend == 0):
            raise ValueError("repeat needs amount_off and a min_spend")
        return self


class Coupon(_Benefit):
    """Applies when ``code`` is presented. ``max_units`` makes it an item coupon (per unit
    on up to that many of the dearest eligible units); ``min_spend`` a threshold coupon."""

    kind: Literal["coupon"] = "coupon"
    code: Annotated[str, Field(min_length=1)]
    scope: Scope = Scope()
    min_spend: Minor = 0
    max_units: Count | None = None


class PointsEarn(_Base):
    """``points`` per ``per_minor`` spent on ``scope`` (floored). Same group: best only."""

    kind: Literal["points_earn"] = "points_earn"
    scope: Scope = Scope()
    points: Count
    per_minor: Count


class PointsTender(_Base):
    """Pay with points in blocks: ``block_points`` points pay ``block_minor``."""

    kind: Literal["points_tender"] = "points_tender"
    block_points: Count
    block_minor: Count
    max_share_bp: BasisPoints = 10_000
    """At most this share of the total may be paid with points."""
    min_points: Annotated[int, Field(ge=0)] = 0


class StoredValueTender(_Base):
    kind: Literal["stored_value_tender"] = "stored_value_tender"
    max_share_bp: BasisPoints = 10_000


Promotion = Annotated[
    Markdown
    | TierPrice
    | BuyXGetY
    | Bundle
    | Gift
    | Threshold
    | Coupon
    | PointsEarn
    | PointsTender
    | StoredValueTender,
    Field(discriminator="kind"),
]


def check_promotion(promo: Promotion) -> Promotion:
    """``promo`` if it can apply at some moment; ``InvalidPromotion`` naming the field if not.

    The model accepts both cases below (each field is valid on its own), and the engine
    would price with them, but such a promotion is published and then never applies: a
    validity that ends at or before it starts, or a daily window that starts where it
    ends (``time_until_min`` is exclusive, so ``[t, t)`` is empty; a whole day is
    ``0``-``1440``). HQ calls this where definitions enter (the cloud's promotion PUT);
    snapshots already published are not re-judged, so a till keeps pricing with them.
    """
    c = promo.conditions
    if c.valid_from_ms is not None and c.valid_until_ms is not None \
            and c.valid_until_ms <= c.valid_from_ms:
        raise InvalidPromotion(promo.id, f"must be after valid_from_ms ({c.valid_from_ms}); "
                               "the promotion would never apply",
                               field="conditions.valid_until_ms")
    if c.time_from_min is not None and c.time_from_min == c.time_until_min:
        raise InvalidPromotion(promo.id, f"equals time_from_min ({c.time_from_min}): an "
                               "empty daily window; the promotion would never apply",
                               field="conditions.time_until_min")
    return promo
