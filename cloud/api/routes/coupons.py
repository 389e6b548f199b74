"""Campaigns and coupons: HQ creates campaigns and issues coupons; tills redeem them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import PrincipalDep, StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.routes.retail_common import (
    HqRole,
    MemberId,
    RetailDep,
    RetailRead,
    TillRole,
    reads,
    require_store,
    writes,
)
from cloud.api.schemas import Text
from cloud.db.models_loyalty import Campaign, Coupon
from cloud.loyalty.coupons import (
    CouponBenefit,
    SaleRules,
    Trigger,
    create_campaign,
    get_coupon,
    is_redeemed,
    issue_coupon,
    redeem_coupon,
)
from cloud.loyalty.errors import Conflict, CouponUnusable
from cloud.loyalty.members import get_member
from protocols.ids import Id

router = APIRouter(tags=["coupons"], route_class=JsonRoute)

Code = Annotated[Id, Path(description="coupon code")]
CampaignId = Annotated[Id, Path(description="campaign id")]


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    campaign_id: Id | None = Field(default=None, description="chosen id (default: generated)")
    name: Annotated[Text, Field(min_length=1, max_length=200)]
    trigger: Trigger = Field(description="manual, sale (payment-triggered) or referral")
    benefit: CouponBenefit
    rules: SaleRules = SaleRules()
    validity_days: Annotated[int, Field(ge=1, le=3660)] = 30


class CampaignPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    campaign_id: str
    name: str
    trigger: str
    engine_code: str = Field(description="code to present to the pricing engine")
    benefit: dict[str, object]
    rules: dict[str, object]
    validity_days: int
    active: bool


class CouponIssue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: Id
    request_id: Annotated[Text, Field(min_length=1, max_length=100)] = Field(
        description="idempotency key: the same request issues one coupon")


class CouponPublic(BaseModel):
    code: str
    campaign_id: str
    member_id: str
    issued_ms: int
    expires_ms: int
    redeemed: bool
    engine_code: str


class Redeem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_id: Id | None = Field(default=None, description="the redeeming store; a "
                                "store-bound token must name one of its stores (a token "
                                "bound to exactly one store defaults to it)")
    sale_id: Annotated[Text, Field(max_length=128)] | None = None
    member_id: Id | None = Field(default=None, description="checked against the coupon owner")


def _public(session: Session, coupon: Coupon) -> CouponPublic:
    campaign = session.get(Campaign, coupon.campaign_id)
    return CouponPublic(code=coupon.code, campaign_id=coupon.campaign_id,
                        member_id=coupon.member_id, issued_ms=coupon.issued_ms,
                        expires_ms=coupon.expires_ms, redeemed=is_redeemed(session, coupon.code),
                        engine_code=campaign.engine_code if campaign else "")


@router.post("/campaigns", status_code=201, summary="Create a coupon campaign",
             responses={409: {"description": "campaign id taken"}})
def create(body: CampaignCreate, state: StateDep, _: HqRole) -> CampaignPublic:
    def work(s: Session) -> CampaignPublic:
        if body.campaign_id and s.get(Campaign, body.campaign_id) is not None:
            raise Conflict(f"campaign {body.campaign_id!r} exists")
        return CampaignPublic.model_validate(create_campaign(
            s, name=body.name, trigger=body.trigger, benefit=body.benefit,
            rules=body.rules, validity_days=body.validity_days,
            now_ms=state.clock.now_ms(), campaign_id=body.campaign_id))

    return writes(state, work)


@router.get("/campaigns", summary="List campaigns")
def list_campaigns(state: StateDep, _: RetailRead) -> list[CampaignPublic]:
    return reads(state, lambda s: [CampaignPublic.model_validate(c) for c in s.scalars(
        select(Campaign).order_by(Campaign.created_ms, Campaign.campaign_id))])


@router.post("/campaigns/{campaign_id}/coupons", status_code=201,
             summary="Issue a coupon of this campaign to a member (idempotent by request_id)",
             responses={404: {"description": "unknown campaign or member"}})
def issue(campaign_id: CampaignId, body: CouponIssue, state: StateDep, retail: RetailDep,
          _: HqRole) -> CouponPublic:
    def work(s: Session) -> CouponPublic:
        coupon, created = issue_coupon(s, campaign_id, body.member_id,
                                       source_key=f"manual:{body.request_id}",
                                       now_ms=state.clock.now_ms())
        if created:
            retail.loyalty_metrics.coupons_issued.labels(trigger="manual").inc()
        return _public(s, coupon)

    return writes(state, work)


@router.get("/coupons/{code}", summary="One coupon and whether it was used",
            responses={404: {"description": "unknown code"}})
def get(code: Code, state: StateDep, _: RetailRead) -> CouponPublic:
    return reads(state, lambda s: _public(s, get_coupon(s, code)))


@router.get("/members/{member_id}/coupons", summary="A member's coupons, newest first",
            responses={404: {"description": "unknown member"}})
def member_coupons(member_id: MemberId, state: StateDep, _: RetailRead) -> list[CouponPublic]:
    def work(s: Session) -> list[CouponPublic]:
        get_member(s, member_id)
        rows = s.scalars(select(Coupon).where(Coupon.member_id == member_id)
                         .order_by(Coupon.issued_ms.desc(), Coupon.code))
        return [_public(s, c) for c in rows]

    return reads(state, work)


@router.post("/coupons/{code}/redeem", summary="Use a coupon once (single use is enforced "
             "by the database); returns the engine code to put in the basket",
             responses={404: {"description": "unknown code, or store_id is not a store the "
                                             "cloud knows"},
                        409: {"description": "already redeemed, or another member's"},
                        410: {"description": "expired"}})
def redeem(code: Code, body: Redeem, state: StateDep, retail: RetailDep,
           _: TillRole, who: PrincipalDep) -> CouponPublic:
    store_id = body.store_id
    if store_id is None and len(who.stores) == 1 and not who.regions:
        (store_id,) = who.stores

    def work(s: Session) -> CouponPublic:
        who.check_store(s, store_id)
        if store_id is not None:
            require_store(s, store_id)
        coupon, _campaign = redeem_coupon(s, code, now_ms=state.clock.now_ms(),
                                          store_id=store_id, sale_id=body.sale_id,
                                          member_id=body.member_id)
        return _public(s, coupon)

    try:
        result = writes(state, work)
    except Exception as err:
        cause = err.__cause__
        reason = cause.reason if isinstance(cause, CouponUnusable) else "refused"
        retail.loyalty_metrics.redemptions.labels(result=reason).inc()
        raise
    retail.loyalty_metrics.redemptions.labels(result="ok").inc()
    return result
