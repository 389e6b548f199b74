"""Loyalty members: join, list, look up by phone, points, stored value, commissions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import PrincipalDep, StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.paging import (
    DEFAULT_LIMIT,
    NEXT_HEADERS,
    Cursor,
    Limit,
    cut,
    decode_cursor,
    set_next,
)
from cloud.api.problems import ApiProblem
from cloud.api.routes.retail_common import (
    HqRole,
    MemberId,
    RetailDep,
    RetailRead,
    RetailState,
    TillRole,
    reads,
    writes,
)
from cloud.api.schemas import BigInt, Text
from cloud.db.models_loyalty import Member, PointsEntry
from cloud.loyalty import distribution, points, stored_value
from cloud.loyalty.members import create_member, find_by_phone, get_member
from cloud.loyalty.tiers import member_tier
from protocols.ids import Id

router = APIRouter(prefix="/members", tags=["members"], route_class=JsonRoute)

Key = Annotated[Text, Field(min_length=1, max_length=128)]
MEMBERS = "members"  # the listing's name in its cursors


class MemberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: Annotated[str, Field(max_length=32)] | None = Field(
        default=None, description="stored only as a keyed hash, for look-up")
    referred_by: Id | None = Field(default=None, description="member who invited them")
    recruited_by: Id | None = Field(default=None, description="distributor who recruited them")
    is_distributor: bool = False


class PhoneLookup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: Annotated[str, Field(max_length=32)]


class MemberPublic(BaseModel):
    member_id: str
    created_ms: int
    tier: str | None = Field(description="tier now; the pricing engine's Member.tier")
    points_balance: int
    stored_value_balance: int
    is_distributor: bool
    referred_by: str | None
    recruited_by: str | None


class MemberSummary(BaseModel):
    """A row of the member list: what the members table holds. Balances and tier are
    computed per member (``GET /members/{member_id}``), too dear for 5,000 rows a page."""

    model_config = ConfigDict(from_attributes=True)

    member_id: str
    created_ms: int
    is_distributor: bool
    referred_by: str | None
    recruited_by: str | None


class PointsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: Annotated[int, Field(ge=1, le=10**9)]
    op_id: Key = Field(description="idempotency key, e.g. spend:<sale event id>")


class OpPublic(BaseModel):
    op_id: str
    kind: str
    points: int
    replayed: bool
    balance: int


class EntryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    op_id: str
    kind: str
    points: int
    created_ms: int
    expires_ms: int | None
    lot_id: str | None


class StoredValueChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["load", "spend", "refund"]
    amount: Annotated[int, Field(ge=1, le=10**10, description="minor units, positive")]
    ref: Key = Field(description="idempotency key")


class StoredValuePublic(BaseModel):
    member_id: str
    balance: int


class CommissionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    sale_id: str
    level: int
    points: int = Field(description="earned when the sale was made")
    reversed_points: int = Field(description="taken back by returns (in proportion)")
    status: str
    settle_after_ms: int
    closed_ms: int | None


UNKNOWN_MEMBER: dict[int | str, dict[str, Any]] = {404: {"description": "unknown member"}}


def _public(session: Session, member: Member, retail: RetailState, now_ms: int) -> MemberPublic:
    return MemberPublic(
        member_id=member.member_id, created_ms=member.created_ms,
        tier=member_tier(session, member.member_id, now_ms=now_ms,
                         window_ms=retail.program.tier_window_ms),
        points_balance=points.balance(session, member.member_id),
        stored_value_balance=stored_value.balance(session, member.member_id),
        is_distributor=member.is_distributor, referred_by=member.referred_by,
        recruited_by=member.recruited_by)


@router.post("", status_code=201, summary="Enrol a member (a referral issues both coupons)",
             responses={404: {"description": "unknown referred_by or recruited_by member"},
                        409: {"description": "phone already enrolled, or recruited_by is "
                                             "not a distributor"},
                        503: {"description": "member_hash_key not configured"}})
def create(body: MemberCreate, state: StateDep, retail: RetailDep, _: TillRole) -> MemberPublic:
    now = state.clock.now_ms()

    def work(s: Session) -> MemberPublic:
        member = create_member(s, now_ms=now, key=state.settings.member_hash_key,
                               phone=body.phone, referred_by=body.referred_by,
                               recruited_by=body.recruited_by,
                               is_distributor=body.is_distributor)
        made = distribution.reward_referral(s, member, program=retail.program, now_ms=now)
        retail.loyalty_metrics.coupons_issued.labels(trigger="referral").inc(len(made))
        return _public(s, member, retail, now)

    return writes(state, work)


@router.get("", summary="List members in member_id order (their enrolment order: uuid7)",
            responses={200: {"headers": NEXT_HEADERS}})
def list_members(request: Request, response: Response, state: StateDep, who: PrincipalDep,
                 _: HqRole, is_distributor: bool | None = None, limit: Limit = DEFAULT_LIMIT,
                 cursor: Cursor = None) -> list[MemberSummary]:
    # Members belong to the chain, not to a store: a token scoped to stores has no
    # members of its own to list (decision 0052).
    if not who.chain_wide:
        raise ApiProblem(403, "members belong to the chain: listing them takes a chain-wide "
                         "token", reason="forbidden_store")
    stmt = select(Member).order_by(Member.member_id).limit(limit + 1)
    if cursor is not None:
        (after,) = decode_cursor(cursor, MEMBERS, (str,))
        stmt = stmt.where(Member.member_id > after)
    if is_distributor is not None:
        stmt = stmt.where(Member.is_distributor == is_distributor)

    def work(s: Session) -> list[MemberSummary]:
        rows, nxt = cut(list(s.scalars(stmt)), limit, MEMBERS, lambda m: (m.member_id,))
        set_next(request, response, nxt)
        return [MemberSummary.model_validate(m) for m in rows]

    return reads(state, work)


@router.post("/lookup", summary="Find a member by phone number (POST keeps it out of URLs)",
             responses={404: {"description": "no member with this phone"},
                        503: {"description": "member_hash_key not configured"}})
def lookup(body: PhoneLookup, state: StateDep, retail: RetailDep, _: TillRole) -> MemberPublic:
    return reads(state, lambda s: _public(
        s, find_by_phone(s, body.phone, key=state.settings.member_hash_key), retail,
        state.clock.now_ms()))


@router.get("/{member_id}", summary="A member with tier and balances",
            responses={404: {"description": "unknown member"}})
def get(member_id: MemberId, state: StateDep, retail: RetailDep, _: RetailRead) -> MemberPublic:
    return reads(state, lambda s: _public(s, get_member(s, member_id), retail,
                                          state.clock.now_ms()))


@router.get("/{member_id}/points", summary="Points ledger, oldest first",
            responses=UNKNOWN_MEMBER)
def ledger(member_id: MemberId, state: StateDep, _: RetailRead,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100,
           offset: Annotated[BigInt, Query()] = 0) -> list[EntryPublic]:
    def work(s: Session) -> list[EntryPublic]:
        get_member(s, member_id)
        rows = s.scalars(select(PointsEntry).where(PointsEntry.member_id == member_id)
                         .order_by(PointsEntry.created_ms, PointsEntry.id)
                         .offset(offset).limit(limit))
        return [EntryPublic.model_validate(r) for r in rows]

    return reads(state, work)


def _points_op(state: StateDep, member_id: str, body: PointsChange, kind: str,
               retail: RetailState) -> OpPublic:
    now = state.clock.now_ms()

    def work(s: Session) -> OpPublic:
        if kind == "spend":
            res = points.spend(s, member_id, body.points, op_id=body.op_id, now_ms=now)
        else:
            res = points.credit(s, member_id, body.points, op_id=body.op_id, now_ms=now,
                                ttl_ms=retail.program.points_ttl_ms)
        return OpPublic(op_id=res.op_id, kind=res.kind, points=res.points,
                        replayed=res.replayed, balance=points.balance(s, member_id))

    return writes(state, work)


@router.post("/{member_id}/points/spend", summary="Spend points, nearest expiry first",
             responses={**UNKNOWN_MEMBER, 409: {"description": "not enough points, or "
                                                 "op_id used for another operation"}})
def spend(member_id: MemberId, body: PointsChange, state: StateDep, retail: RetailDep,
          _: TillRole) -> OpPublic:
    return _points_op(state, member_id, body, "spend", retail)


@router.post("/{member_id}/points/earn", summary="Credit points (goodwill, corrections)",
             responses={**UNKNOWN_MEMBER, 409: {"description": "op_id used for another "
                                                 "operation"}})
def earn(member_id: MemberId, body: PointsChange, state: StateDep, retail: RetailDep,
         _: HqRole) -> OpPublic:
    return _points_op(state, member_id, body, "earn", retail)


@router.get("/{member_id}/stored-value", summary="Stored-value balance",
            responses=UNKNOWN_MEMBER)
def sv_balance(member_id: MemberId, state: StateDep, _: RetailRead) -> StoredValuePublic:
    def work(s: Session) -> StoredValuePublic:
        get_member(s, member_id)
        return StoredValuePublic(member_id=member_id, balance=stored_value.balance(s, member_id))

    return reads(state, work)


@router.post("/{member_id}/stored-value", summary="Load, spend or refund stored value",
             responses={**UNKNOWN_MEMBER, 409: {"description": "balance would go negative, "
                                                 "or ref used for another operation"}})
def sv_change(member_id: MemberId, body: StoredValueChange, state: StateDep,
              _: TillRole) -> StoredValuePublic:
    signed = -body.amount if body.kind == "spend" else body.amount

    def work(s: Session) -> StoredValuePublic:
        res = stored_value.apply(s, member_id, signed, kind=body.kind, ref=body.ref,
                                 now_ms=state.clock.now_ms())
        return StoredValuePublic(member_id=member_id, balance=res.balance)

    return writes(state, work)


@router.get("/{member_id}/commissions", summary="Distribution commissions earned")
def commissions(member_id: MemberId, state: StateDep, _: RetailRead) -> list[CommissionPublic]:
    return reads(state, lambda s: [CommissionPublic.model_validate(c)
                                   for c in distribution.commissions_of(s, member_id)])
