"""Campaigns, coupons and single-use redemption.

A campaign is one engine ``Coupon`` rule (``engine_code``) in every published snapshot;
the coupons it issues are per-member codes. At the till the POS redeems the member's
code (``redeem_coupon``) and presents the campaign's ``engine_code`` to ``price()``.

Single use is the database's job: ``coupon_redemptions.code`` is a primary key, and
the insert runs in a savepoint, so of any number of concurrent redemptions exactly one
commits and every other one gets ``CouponUnusable(reason="redeemed")``.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.api.schemas import BigInt, SignedBigInt
from cloud.db.models_loyalty import Campaign, Coupon, CouponRedemption
from cloud.loyalty.errors import CouponUnusable, NotFound
from cloud.loyalty.members import get_member
from cloud.loyalty.program import DAY_MS
from pricing import Coupon as EngineCoupon
from pricing import Promotion, Scope
from protocols.ids import uuid7

logger = logging.getLogger(__name__)

Trigger = Literal["manual", "sale", "referral"]
# Crockford-like alphabet without look-alikes (0/O, 1/I/L): codes are read aloud and typed.
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LEN = 12  # 31^12 ~ 7.9e17: unguessable at any plausible rate of tries


class CouponBenefit(BaseModel):
    """What a campaign's coupon gives: the engine's ``Coupon`` fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    percent_bp: Annotated[int, Field(ge=0, le=10_000)] = 0
    amount_off: BigInt = 0
    min_spend: BigInt = 0
    max_units: Annotated[BigInt, Field(ge=1)] | None = None
    scope: Scope = Scope()
    priority: SignedBigInt = 100
    group: str = ""
    combines_with: tuple[str, ...] = ("*",)


class SaleRules(BaseModel):
    """Which sales trigger a ``sale`` campaign."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_paid: BigInt = 0
    stores: tuple[str, ...] = ()
    """Empty = every store."""


def new_code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LEN))


def create_campaign(
    session: Session,
    *,
    name: str,
    trigger: Trigger,
    benefit: CouponBenefit,
    now_ms: int,
    validity_days: int = 30,
    rules: SaleRules | None = None,
    campaign_id: str | None = None,
) -> Campaign:
    cid = campaign_id or uuid7(now_ms)
    campaign = Campaign(
        campaign_id=cid, name=name, trigger=trigger, engine_code=f"CMP-{cid}"[:64],
        benefit=benefit.model_dump(mode="json"),
        rules=(rules or SaleRules()).model_dump(mode="json"),
        validity_days=validity_days, active=True, created_ms=now_ms,
    )
    # Validate the engine rule now, so a bad campaign fails here and not at publish time.
    campaign_promotion(campaign)
    session.add(campaign)
    session.flush()
    return campaign


def campaign_promotion(campaign: Campaign) -> Promotion:
    benefit = CouponBenefit.model_validate(campaign.benefit)
    return EngineCoupon(
        id=f"campaign-{campaign.campaign_id}", name=campaign.name, code=campaign.engine_code,
        **benefit.model_dump(),
    )


def active_campaigns(session: Session, trigger: str | None = None) -> list[Campaign]:
    stmt = select(Campaign).where(Campaign.active).order_by(Campaign.campaign_id)
    if trigger is not None:
        stmt = stmt.where(Campaign.trigger == trigger)
    return list(session.scalars(stmt))


def issue_coupon(
    session: Session, campaign_id: str, member_id: str, *, source_key: str, now_ms: int
) -> tuple[Coupon, bool]:
    """Issue (or find the already issued) coupon for this campaign, member and cause.

    Returns ``(coupon, created)``; ``source_key`` (``sale:<event id>``,
    ``referral:<member>``, ``manual:<request id>``) makes issuing idempotent.
    """
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("campaign", campaign_id)
    get_member(session, member_id)
    existing = session.scalar(select(Coupon).where(
        Coupon.campaign_id == campaign_id, Coupon.member_id == member_id,
        Coupon.source_key == source_key))
    if existing is not None:
        return existing, False
    coupon = Coupon(code=new_code(), campaign_id=campaign_id, member_id=member_id,
                    source_key=source_key, issued_ms=now_ms,
                    expires_ms=now_ms + campaign.validity_days * DAY_MS)
    session.add(coupon)
    session.flush()
    return coupon, True


def get_coupon(session: Session, code: str) -> Coupon:
    coupon = session.get(Coupon, code)
    if coupon is None:
        raise NotFound("coupon", code)
    return coupon


def redeem_coupon(
    session: Session,
    code: str,
    *,
    now_ms: int,
    store_id: str | None = None,
    sale_id: str | None = None,
    member_id: str | None = None,
) -> tuple[Coupon, Campaign]:
    """Mark ``code`` used. Raises ``CouponUnusable`` (expired, wrong member, inactive,
    already redeemed) or ``NotFound``; returns the coupon and its campaign (whose
    ``engine_code`` goes into the basket)."""
    coupon = get_coupon(session, code)
    campaign = session.get(Campaign, coupon.campaign_id)
    if campaign is None or not campaign.active:
        raise CouponUnusable(code, "inactive")
    if member_id is not None and member_id != coupon.member_id:
        raise CouponUnusable(code, "wrong_member")
    if coupon.expires_ms <= now_ms:
        raise CouponUnusable(code, "expired")
    try:
        with session.begin_nested():
            session.add(CouponRedemption(code=code, redeemed_ms=now_ms, store_id=store_id,
                                         sale_id=sale_id))
    except sa_exc.IntegrityError as err:
        raise CouponUnusable(code, "redeemed") from err
    return coupon, campaign


def expire_coupons(session: Session, *, now_ms: int) -> int:
    """Mark coupons that lapsed unused (``expired_ms``); returns how many were marked.

    Clock-driven job. One conditional ``UPDATE``: a coupon is marked once however many
    schedulers run it at the same time (on PostgreSQL the second waits for the first's
    row lock and re-checks ``expired_ms IS NULL``; SQLite writers are serialised).
    Redemption already refuses expired codes by ``expires_ms``; the mark is for reports.
    """
    redeemed = select(CouponRedemption.code).where(CouponRedemption.code == Coupon.code)
    result = session.execute(
        update(Coupon)
        .where(Coupon.expired_ms.is_(None), Coupon.expires_ms <= now_ms, ~redeemed.exists())
        .values(expired_ms=now_ms)
        .execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def is_redeemed(session: Session, code: str) -> bool:
    return session.get(CouponRedemption, code) is not None


def sale_campaigns_matching(
    session: Session, *, store_id: str, paid: int
) -> list[Campaign]:
    out = []
    for campaign in active_campaigns(session, "sale"):
        rules = SaleRules.model_validate(campaign.rules)
        if paid >= rules.min_paid and (not rules.stores or store_id in rules.stores):
            out.append(campaign)
    return out


def coupon_view(coupon: Coupon, *, redeemed: bool, engine_code: str) -> dict[str, Any]:
    return {"code": coupon.code, "campaign_id": coupon.campaign_id,
            "member_id": coupon.member_id, "issued_ms": coupon.issued_ms,
            "expires_ms": coupon.expires_ms, "redeemed": redeemed, "engine_code": engine_code}
