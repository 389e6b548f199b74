"""The staff assistant's store views (decision 0065): the member at the counter, the
store's lists and its rankings. Dependencies, error mapping and the other staff routes
are in ``cloud.api.routes.staff``; every path here has ``store_id``, so the router-wide
scope check keeps an assistant to their store.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from cloud.api.deps import StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.paging import NEXT_HEADERS, Cursor, cut, decode_cursor, set_next
from cloud.api.routes.retail_common import MemberId, RetailDep
from cloud.api.routes.staff import CallerDep, StaffDep, StoreId, _run
from cloud.loyalty.program import DAY_MS
from cloud.staff import counter, lists, rankings, winback
from protocols.ids import Id, SignedCode

router = APIRouter(prefix="/staff/stores/{store_id}", tags=["staff assistant"],
                   route_class=JsonRoute)

PAGE_LIMIT = 50  # rows an assistant's phone shows at once
MAX_PAGE = 500  # the most one call returns
PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="rows per page")]
Days = Annotated[int, Query(ge=1, le=366, description="the period: the last N days")]
PAGED: dict[int | str, dict[str, Any]] = {200: {"headers": NEXT_HEADERS}}


class CounterLookup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: SignedCode | None = Field(
        default=None, description="the member code on the member's phone (SFM2...)")
    member_id: Id | None = Field(default=None, description="a member the store knows")

    @model_validator(mode="after")
    def _one(self) -> CounterLookup:
        if (self.code is None) == (self.member_id is None):
            raise ValueError("give code or member_id, one of them")
        return self


class CouponLinePublic(BaseModel):
    code: str
    campaign: str
    expires_ms: int


class PurchasePublic(BaseModel):
    event_id: str
    ts: int
    paid: int = Field(description="minor units")


class MemberAtCounter(BaseModel):
    member_id: str
    joined_ms: int
    tier: str | None
    points: int
    stored_value: int = Field(description="minor units")
    home_store: str | None
    recruited_by: str | None = Field(description="the assistant of this store who "
                                     "recruited them")
    birthday: str | None = Field(description="MM-DD")
    coupons: list[CouponLinePublic] = Field(description="usable now, soonest expiry first")
    last_purchases: list[PurchasePublic] = Field(description="at this store, newest first")


def _md(month_day: int | None) -> str | None:
    return None if month_day is None else f"{month_day // 100:02d}-{month_day % 100:02d}"


@router.post("/counter", summary="The member at the counter, by member code or id",
             responses={403: {"description": "code_forged / code_unknown_member"},
                        404: {"description": "no such member known at this store"},
                        409: {"description": "code_replayed: already shown here"},
                        410: {"description": "code_expired / code_not_yet_valid"},
                        422: {"description": "code_malformed"},
                        503: {"description": "no member_code_secret configured"}})
def at_counter(store_id: StoreId, body: CounterLookup, state: StateDep, staff: StaffDep,
               retail: RetailDep, _: CallerDep) -> MemberAtCounter:
    now = state.clock.now_ms()

    def work(s: Session) -> MemberAtCounter:
        by_code = body.code is not None
        member_id = (staff.check_member_code(body.code, now_ms=now) if body.code is not None
                     else str(body.member_id))
        view = counter.at_counter(s, store_id=store_id, member_id=member_id, now_ms=now,
                                  program=retail.program, by_code=by_code)
        return MemberAtCounter(
            member_id=view.member_id, joined_ms=view.joined_ms, tier=view.tier,
            points=view.points, stored_value=view.stored_value, home_store=view.home_store,
            recruited_by=view.recruited_by, birthday=_md(view.birthday),
            coupons=[CouponLinePublic(code=c.code, campaign=c.campaign,
                                      expires_ms=c.expires_ms) for c in view.coupons],
            last_purchases=[PurchasePublic(event_id=p.event_id, ts=p.ts, paid=p.paid)
                            for p in view.last_purchases])

    return _run(state, staff, work)


class BirthdayPublic(BaseModel):
    member_id: str
    birthday: str = Field(description="MM-DD")
    in_days: int = Field(description="0: today (UTC)")


@router.get("/birthdays", summary="Home members whose birthday is within the next days",
            responses=PAGED)
def birthdays(store_id: StoreId, request: Request, response: Response, state: StateDep,
              staff: StaffDep, _: CallerDep,
              days: Annotated[int, Query(ge=1, le=31)] = 7,
              limit: PageLimit = PAGE_LIMIT, cursor: Cursor = None) -> list[BirthdayPublic]:
    listing = "staff-birthdays"

    def work(s: Session) -> list[BirthdayPublic]:
        after = decode_cursor(cursor, listing, (int, str)) if cursor else None
        rows = lists.birthdays(s, store_id=store_id, now_ms=state.clock.now_ms(), days=days,
                               limit=limit, after=after)  # type: ignore[arg-type]
        page, nxt = cut(rows, limit, listing, lambda r: (r.day, r.member_id))
        set_next(request, response, nxt)
        return [BirthdayPublic(member_id=r.member_id, birthday=str(_md(r.month_day)),
                               in_days=r.day) for r in page]

    return _run(state, staff, work)


class LapsedPublic(BaseModel):
    member_id: str
    joined_ms: int
    last_purchase_ms: int | None = Field(description="at any store; null: never bought")
    lapse_ms: int = Field(description="last activity: the last purchase, or joining")
    coupon: str | None = Field(description="the one-tap coupon already given for this "
                               "lapse")


@router.get("/lapsed", summary="Home members with no purchase in the last days, longest "
            "lapsed first", responses=PAGED)
def lapsed(store_id: StoreId, request: Request, response: Response, state: StateDep,
           staff: StaffDep, _: CallerDep, days: Days | None = None,
           limit: PageLimit = PAGE_LIMIT, cursor: Cursor = None) -> list[LapsedPublic]:
    listing = "staff-lapsed"

    def work(s: Session) -> list[LapsedPublic]:
        after = decode_cursor(cursor, listing, (int, str)) if cursor else None
        rows = lists.lapsed(s, store_id=store_id, now_ms=state.clock.now_ms(),
                            days=days or staff.lapsed_days, limit=limit,
                            after=after)  # type: ignore[arg-type]
        page, nxt = cut(rows, limit, listing, lambda r: (r.lapse_ms, r.member_id))
        set_next(request, response, nxt)
        return [LapsedPublic(member_id=r.member_id, joined_ms=r.joined_ms,
                             last_purchase_ms=r.last_purchase_ms, lapse_ms=r.lapse_ms,
                             coupon=r.coupon) for r in page]

    return _run(state, staff, work)


class GivenPublic(BaseModel):
    code: str
    member_id: str
    campaign_id: str
    expires_ms: int
    lapse_ms: int
    issued_by: str
    replayed: bool = Field(description="already given for this lapse: the same coupon")


@router.post("/lapsed/{member_id}/coupon", status_code=201,
             summary="The one-tap coupon for a lapsed home member (one per lapse)",
             responses={200: {"model": GivenPublic, "description": "already given for "
                              "this lapse: the same coupon (replayed)"},
                        404: {"description": "not a home member of this store"},
                        409: {"description": "not_lapsed: bought within the days; "
                              "no_winback_campaign: HQ has not created it"}})
def give_coupon(store_id: StoreId, member_id: MemberId, response: Response, state: StateDep,
                staff: StaffDep, caller: CallerDep, days: Days | None = None) -> GivenPublic:
    def work(s: Session) -> GivenPublic:
        given = winback.give(s, store_id=store_id, member_id=member_id,
                             campaign_id=staff.winback_campaign,
                             lapsed_days=days or staff.lapsed_days,
                             issued_by=caller.principal.name, now_ms=state.clock.now_ms())
        return GivenPublic(code=given.code, member_id=given.member_id,
                           campaign_id=given.campaign_id, expires_ms=given.expires_ms,
                           lapse_ms=given.lapse_ms, issued_by=given.issued_by,
                           replayed=given.replayed)

    out = _run(state, staff, work, write=True)
    if out.replayed:
        response.status_code = 200
    staff.metrics.coupons.labels(result="replayed" if out.replayed else "issued").inc()
    return out


class StandingPublic(BaseModel):
    value: int = Field(description="sales: minor units; the others: counts")
    rank: int = Field(description="1 = best; ties share a rank")
    of: int = Field(description="stores ranked")


class StoreStanding(BaseModel):
    store_id: str
    days: int
    since_ms: int
    until_ms: int
    sales: StandingPublic
    new_members: StandingPublic
    coupons_redeemed: StandingPublic


@router.get("/rankings/store", summary="The store's figures over the period and where it "
            "stands among all stores (no other store's figures)")
def store_ranking(store_id: StoreId, state: StateDep, staff: StaffDep, _: CallerDep,
                  days: Days = 30) -> StoreStanding:
    until = state.clock.now_ms()
    since = until - days * DAY_MS

    def work(s: Session) -> StoreStanding:
        got = rankings.store_standing(s, store_id=store_id, since_ms=since, until_ms=until)
        return StoreStanding(store_id=store_id, days=days, since_ms=since, until_ms=until,
                             **{k: StandingPublic(value=v.value, rank=v.rank, of=v.of)
                                for k, v in got.items()})

    return _run(state, staff, work)


class AssistantRank(BaseModel):
    assistant_id: str
    display_name: str
    active: bool
    sales: int = Field(description="their recruits' sales here, minor units")
    new_members: int
    coupons_redeemed: int
    rank: int = Field(description="by the figure asked for; 1 = best, ties share")


@router.get("/rankings/assistants", summary="The store's assistants ranked by a figure "
            "over the period", responses=PAGED)
def assistant_ranking(store_id: StoreId, request: Request, response: Response, state: StateDep,
                      staff: StaffDep, _: CallerDep, days: Days = 30,
                      by: Literal["sales", "new_members", "coupons_redeemed"] = "sales",
                      limit: PageLimit = PAGE_LIMIT,
                      cursor: Cursor = None) -> list[AssistantRank]:
    listing = f"staff-rank-{by}"
    until = state.clock.now_ms()

    def work(s: Session) -> list[AssistantRank]:
        after = decode_cursor(cursor, listing, (int, str)) if cursor else None
        rows = rankings.assistants(s, store_id=store_id, since_ms=until - days * DAY_MS,
                                   until_ms=until, by=by, limit=limit,
                                   after=after)  # type: ignore[arg-type]
        page, nxt = cut(rows, limit, listing, lambda r: rankings.cursor_key(r, by))
        set_next(request, response, nxt)
        return [AssistantRank(assistant_id=r.assistant_id, display_name=r.display_name,
                              active=r.active, sales=r.sales, new_members=r.new_members,
                              coupons_redeemed=r.coupons_redeemed, rank=r.rank)
                for r in page]

    return _run(state, staff, work)
