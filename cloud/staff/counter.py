"""The member at the counter: who they are to the store, in one read.

Found by a member code (``protocols.membercode``, the rotating QR on their phone: any
member of the chain, since showing it proves they are there) or by member id, which
finds only members the store knows: its home members, its recruits and those who
bought there. Another store's member by id is ``NotFound``, as is a member who does
not exist: the answer does not tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import Campaign, Coupon, CouponRedemption, Member
from cloud.db.models_members import MemberHomeStore
from cloud.db.models_staff import MemberBirthday, MemberRecruit, StoreSale
from cloud.loyalty import points, stored_value
from cloud.loyalty.errors import NotFound
from cloud.loyalty.program import LoyaltyProgram
from cloud.loyalty.tiers import member_tier

LAST_PURCHASES = 5  # what fits beside the member on an assistant's phone


@dataclass(frozen=True, slots=True)
class CouponLine:
    code: str
    campaign: str
    expires_ms: int


@dataclass(frozen=True, slots=True)
class Purchase:
    event_id: str
    ts: int
    paid: int


@dataclass(frozen=True, slots=True)
class AtCounter:
    member_id: str
    joined_ms: int
    tier: str | None
    points: int
    stored_value: int
    home_store: str | None
    recruited_by: str | None
    birthday: int | None
    coupons: list[CouponLine]
    last_purchases: list[Purchase]


def known_at(session: Session, store_id: str, member_id: str) -> bool:
    """Whether ``store_id`` knows the member: home store, recruited or bought there."""
    return bool(session.scalar(select(or_(
        exists().where(MemberHomeStore.member_id == member_id,
                       MemberHomeStore.store_id == store_id),
        exists().where(MemberRecruit.member_id == member_id,
                       MemberRecruit.store_id == store_id),
        exists().where(StoreSale.member_id == member_id, StoreSale.store_id == store_id)))))


def at_counter(session: Session, *, store_id: str, member_id: str, now_ms: int,
               program: LoyaltyProgram, by_code: bool) -> AtCounter:
    member = session.get(Member, member_id)
    if member is None or not (by_code or known_at(session, store_id, member_id)):
        raise NotFound("member", f"{member_id} at store {store_id}")
    home = session.get(MemberHomeStore, member_id)
    recruit = session.get(MemberRecruit, member_id)
    birthday = session.get(MemberBirthday, member_id)
    coupons = session.execute(
        select(Coupon.code, Campaign.name, Coupon.expires_ms)
        .join(Campaign, Campaign.campaign_id == Coupon.campaign_id)
        .outerjoin(CouponRedemption, CouponRedemption.code == Coupon.code)
        .where(Coupon.member_id == member_id, Coupon.expires_ms > now_ms,
               Campaign.active, CouponRedemption.code.is_(None))
        .order_by(Coupon.expires_ms, Coupon.code)).all()
    # Purchases at this store only: what the member bought elsewhere is not this
    # store's business (the scope of a store-assistant token).
    bought = session.execute(
        select(StoreSale.event_id, StoreSale.ts, StoreSale.paid)
        .where(StoreSale.member_id == member_id, StoreSale.store_id == store_id)
        .order_by(StoreSale.ts.desc(), StoreSale.event_id.desc())
        .limit(LAST_PURCHASES)).all()
    return AtCounter(
        member_id=member_id, joined_ms=member.created_ms,
        tier=member_tier(session, member_id, now_ms=now_ms,
                         window_ms=program.tier_window_ms),
        points=points.balance(session, member_id),
        stored_value=stored_value.balance(session, member_id),
        home_store=home.store_id if home is not None else None,
        recruited_by=recruit.assistant_id if recruit is not None and
        recruit.store_id == store_id else None,
        birthday=birthday.month_day if birthday is not None else None,
        coupons=[CouponLine(code=c, campaign=n, expires_ms=e) for c, n, e in coupons],
        last_purchases=[Purchase(event_id=i, ts=t, paid=p) for i, t, p in bought])
