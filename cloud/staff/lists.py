"""The store's lists: birthdays in the coming days and lapsed members, paged in SQL.

Both list the store's home members (``member_home_stores``: joined there, or bound by
HQ or the box). Pages are keyset pages (``cloud.api.paging``): each function returns up
to ``limit + 1`` rows after ``after`` (the sort key of the previous page's last row),
the extra row telling the route there is a next page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import Member
from cloud.db.models_members import MemberHomeStore
from cloud.db.models_staff import MemberBirthday, StaffCoupon, StoreSale
from cloud.loyalty.program import DAY_MS


@dataclass(frozen=True, slots=True)
class Birthday:
    member_id: str
    month_day: int
    day: int  # 0 = today, 1 = tomorrow ... (UTC)


@dataclass(frozen=True, slots=True)
class Lapsed:
    member_id: str
    joined_ms: int
    last_purchase_ms: int | None  # None: never bought
    lapse_ms: int  # last activity: the last purchase, or joining
    coupon: str | None  # the one-tap coupon already given for this lapse


def window_days(now_ms: int, days: int) -> dict[int, int]:
    """``month_day -> day offset`` for today and the next ``days - 1`` days (UTC). In a
    year without 29 February, members born that day are greeted on the 28th."""
    today = dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC).date()
    out: dict[int, int] = {}
    for offset in range(days):
        day = today + dt.timedelta(days=offset)
        out.setdefault(day.month * 100 + day.day, offset)
        if (day.month, day.day) == (2, 28) and (day + dt.timedelta(days=1)).month == 3:
            out.setdefault(229, offset)
    return out


def birthdays(session: Session, *, store_id: str, now_ms: int, days: int, limit: int,
              after: tuple[int, str] | None = None) -> list[Birthday]:
    """The store's home members whose birthday falls within ``days`` days from today,
    soonest first."""
    window = window_days(now_ms, days)
    day = case(window, value=MemberBirthday.month_day).label("day")
    stmt = (select(MemberHomeStore.member_id, MemberBirthday.month_day, day)
            .join(MemberBirthday, MemberBirthday.member_id == MemberHomeStore.member_id)
            .where(MemberHomeStore.store_id == store_id,
                   MemberBirthday.month_day.in_(sorted(window)))
            .order_by(day, MemberHomeStore.member_id).limit(limit + 1))
    if after is not None:
        stmt = stmt.where(or_(day > after[0], and_(day == after[0],
                                                   MemberHomeStore.member_id > after[1])))
    return [Birthday(member_id=m, month_day=md, day=d)
            for m, md, d in session.execute(stmt).all()]


def lapsed(session: Session, *, store_id: str, now_ms: int, days: int, limit: int,
           after: tuple[int, str] | None = None) -> list[Lapsed]:
    """The store's home members with no purchase (at any store) in the last ``days``
    days and who joined before that, longest lapsed first."""
    last = func.max(StoreSale.ts)
    activity = func.coalesce(last, Member.created_ms)
    stmt = (select(MemberHomeStore.member_id, Member.created_ms, last, activity)
            .join(Member, Member.member_id == MemberHomeStore.member_id)
            .outerjoin(StoreSale, StoreSale.member_id == MemberHomeStore.member_id)
            .where(MemberHomeStore.store_id == store_id)
            .group_by(MemberHomeStore.member_id, Member.created_ms)
            .having(activity <= now_ms - days * DAY_MS)
            .order_by(activity, MemberHomeStore.member_id).limit(limit + 1))
    if after is not None:
        stmt = stmt.having(or_(activity > after[0], and_(
            activity == after[0], MemberHomeStore.member_id > after[1])))
    rows = session.execute(stmt).all()
    # The page's coupons in one query (at most a page of members, not a loop of reads).
    given = {(m, lapse): code for m, lapse, code in session.execute(
        select(StaffCoupon.member_id, StaffCoupon.lapse_ms, StaffCoupon.code).where(
            StaffCoupon.store_id == store_id,
            StaffCoupon.member_id.in_([r[0] for r in rows])))} if rows else {}
    return [Lapsed(member_id=m, joined_ms=j, last_purchase_ms=lp, lapse_ms=a,
                   coupon=given.get((m, a))) for m, j, lp, a in rows]


def last_activity(session: Session, member_id: str) -> int | None:
    """The member's last purchase at any store, or when they joined; None: no member."""
    last = func.max(StoreSale.ts)
    return session.scalar(
        select(func.coalesce(last, Member.created_ms))
        .select_from(Member).outerjoin(StoreSale, StoreSale.member_id == Member.member_id)
        .where(Member.member_id == member_id).group_by(Member.created_ms))
