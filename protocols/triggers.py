"""Coupon-trigger rules and what they produce (issue 5, in-aisle coupons).

A ``TriggerRule`` says *where* (a zone or a shelf of the store layout), *how long*
(dwell), *for whom* (members only, tiers, segments), *on what cue* (a product category
the cart's camera saw), *when* (validity window, store-local weekdays and time of day),
*how often* (caps per member per day and per store per day, a cool-down per cart) and
*what* (a ``CouponTemplate``: the engine coupon code the issued coupon answers to at
the till, and the text the cart screen shows).

Rules travel in the promotion snapshot's side-car (``TriggerRuleSet``) or, until the
cloud's promotions carry them, in the agent's config / desired shadow ``trigger_rules``.
They are plain data (no I/O), like everything in ``protocols``.

=======================  ==========================================================
``CouponIssuedData``     ``Event.data`` of a ``coupon_issued`` event (up, outbox)
``CartScreenPush``       what the agent pushes to a cart screen's WebSocket
=======================  ==========================================================
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocols.errors import DecodeError
from protocols.ids import Id
from protocols.messages import EpochMs

DAY_MS = 86_400_000
Text = Annotated[str, Field(max_length=200)]


class _Doc(BaseModel):
    # Not strict: rules are written by people (TOML, shadow JSON); unknown fields are
    # ignored so an older agent accepts a newer cloud's rules.
    model_config = ConfigDict(extra="ignore", frozen=True)


class CouponTemplate(_Doc):
    """The coupon a rule issues. ``engine_code`` is the code of a ``pricing.Coupon`` in
    the promotion snapshot: the issued single-use code answers to it at the till."""

    engine_code: Id
    title: Text
    title_zh: Text = ""
    body: Text = ""
    body_zh: Text = ""
    valid_for_ms: Annotated[int, Field(ge=60_000, le=31 * DAY_MS)] = 4 * 3_600_000  # the visit


class TriggerRule(_Doc):
    id: Id
    zone: Id | None = None
    shelf: Id | None = None
    dwell_ms: Annotated[int, Field(ge=0, le=3_600_000)] = 0
    member_only: bool = False
    tiers: tuple[str, ...] = ()
    """Member tiers the rule is for (implies members only). Empty = any shopper."""
    segments: tuple[str, ...] = ()
    """Member segments (any one matches; implies members only). Empty = any shopper."""
    vision_category: Id | None = None
    """Fire only if the cart's camera saw this product category recently."""
    vision_within_ms: Annotated[int, Field(ge=1_000, le=3_600_000)] = 120_000
    valid_from_ms: EpochMs | None = None
    valid_until_ms: EpochMs | None = None
    weekdays: tuple[Annotated[int, Field(ge=1, le=7)], ...] = ()
    time_from_min: Annotated[int, Field(ge=0, lt=1440)] | None = None
    time_until_min: Annotated[int, Field(ge=0, le=1440)] | None = None
    per_member_per_day: Annotated[int, Field(ge=1, le=100)] = 1
    """Per member (or per cart session for anonymous shoppers) per store-local day."""
    per_store_per_day: Annotated[int, Field(ge=1)] | None = None
    cooldown_ms: Annotated[int, Field(ge=0, le=DAY_MS)] = 600_000
    """After one issue, the same cart gets nothing more from this rule for this long."""
    priority: int = 100
    """Lower first when several rules fire on one observation."""
    coupon: CouponTemplate

    @model_validator(mode="after")
    def _where(self) -> TriggerRule:
        if (self.zone is None) == (self.shelf is None):
            raise ValueError("a trigger rule names exactly one of zone or shelf")
        if (self.time_from_min is None) != (self.time_until_min is None):
            raise ValueError("time_from_min and time_until_min go together")
        return self

    @property
    def members_only(self) -> bool:
        return self.member_only or bool(self.tiers) or bool(self.segments)


class TriggerRuleSet(_Doc):
    """Rules as the promotion snapshot (or the desired shadow) carries them."""

    v: Literal[1] = 1
    version: Annotated[int, Field(ge=0)] = 0
    rules: tuple[TriggerRule, ...] = Field(default=(), max_length=10_000)

    @model_validator(mode="after")
    def _unique(self) -> TriggerRuleSet:
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate trigger rule id")
        return self


def parse_rules(value: Any) -> tuple[TriggerRule, ...]:
    """Rules from a list of dicts or a ``TriggerRuleSet`` document; ``DecodeError`` names
    the first bad field."""
    doc = {"rules": value} if isinstance(value, list | tuple) else value
    try:
        return TriggerRuleSet.model_validate(doc).rules
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        reason = "missing_field" if first["type"] == "missing" else "invalid_field"
        raise DecodeError(reason, str(first["msg"]), field=where) from err


class CouponIssuedData(_Doc):
    """``data`` of the ``coupon_issued`` event; ``issue_id`` is the event id (idempotent:
    one per rule, member or cart session, store-local day and ordinal)."""

    issue_id: Id
    rule_id: Id
    code: Id
    engine_code: Id
    cart_id: Id
    session_id: Id | None = None
    member_id: Id | None = None
    zone: str | None = None
    shelf: str | None = None
    day: int
    issued_ms: EpochMs
    expires_ms: EpochMs
    source: Literal["trigger"] = "trigger"


class CartScreenPush(_Doc):
    """One message on a cart screen's WebSocket."""

    v: Literal[1] = 1
    type: Literal["coupon", "basket", "position", "member", "hello", "info", "scan_reminder",
                  "receipt"]
    cart_id: Id
    ts: EpochMs
    data: dict[str, Any] = Field(default_factory=dict)
