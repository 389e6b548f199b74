"""Store and assistant figures over a period, grouped in SQL.

The three figures, for a period ``(since_ms, until_ms]`` (the last N days up to now):

* ``sales``: minor units paid (``totals.paid``) in the store's sales (``store_sales``);
* ``new_members``: members created in the period whose home store it is;
* ``coupons_redeemed``: coupons redeemed at the store (``coupon_redemptions``).

An assistant's figures are the same, restricted to the members they recruited at the
store (``member_recruits``): their recruits' sales and coupon redemptions there, and
the recruits who joined in the period. Refunds are not netted (gross sales).

``store_standing`` ranks one store among every store by each figure (1 = best; ties
share a rank) without showing any other store's figures: an assistant sees where their
store stands, not another store's data. ``assistants`` lists a store's assistants with
their figures and rank by one figure, paged by (figure desc, assistant id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Subquery,
    and_,
    cast,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from cloud.db.models import Store
from cloud.db.models_loyalty import Coupon, CouponRedemption, Member
from cloud.db.models_members import MemberHomeStore
from cloud.db.models_staff import MemberRecruit, StaffAssistant, StoreSale

Figure = Literal["sales", "new_members", "coupons_redeemed"]
FIGURES: tuple[Figure, ...] = ("sales", "new_members", "coupons_redeemed")


@dataclass(frozen=True, slots=True)
class Standing:
    value: int
    rank: int  # 1 + the stores with a higher value
    of: int  # stores ranked


@dataclass(frozen=True, slots=True)
class AssistantRow:
    assistant_id: str
    display_name: str
    active: bool
    sales: int
    new_members: int
    coupons_redeemed: int
    rank: int


def _total(column: ColumnElement[int] | InstrumentedAttribute[int]) -> ColumnElement[int]:
    # SUM of a BIGINT is NUMERIC on PostgreSQL (a Decimal): cast back to an integer.
    return cast(func.coalesce(func.sum(column), 0), BigInteger)


def _per_store(figure: Figure, since_ms: int, until_ms: int) -> Select[str | None, int]:
    if figure == "sales":
        return (select(StoreSale.store_id.label("store_id"), _total(StoreSale.paid).label("v"))
                .where(StoreSale.ts > since_ms, StoreSale.ts <= until_ms)
                .group_by(StoreSale.store_id))
    if figure == "new_members":
        return (select(MemberHomeStore.store_id.label("store_id"),
                       func.count().label("v"))
                .join(Member, Member.member_id == MemberHomeStore.member_id)
                .where(Member.created_ms > since_ms, Member.created_ms <= until_ms)
                .group_by(MemberHomeStore.store_id))
    return (select(CouponRedemption.store_id.label("store_id"), func.count().label("v"))
            .where(CouponRedemption.store_id.is_not(None),
                   CouponRedemption.redeemed_ms > since_ms,
                   CouponRedemption.redeemed_ms <= until_ms)
            .group_by(CouponRedemption.store_id))


def store_standing(session: Session, *, store_id: str, since_ms: int,
                   until_ms: int) -> dict[Figure, Standing]:
    """``store_id``'s value and rank by each figure; one statement per figure."""
    stores = session.scalar(select(func.count()).select_from(Store)) or 0
    out: dict[Figure, Standing] = {}
    for figure in FIGURES:
        per = _per_store(figure, since_ms, until_ms).subquery()
        mine = func.coalesce(select(per.c.v).where(per.c.store_id == store_id)
                             .scalar_subquery(), 0)
        above = select(func.count()).select_from(per).where(per.c.v > mine).scalar_subquery()
        ranked = select(func.count()).select_from(per).scalar_subquery()
        value, higher, with_value = session.execute(select(mine, above, ranked)).one()
        out[figure] = Standing(value=int(value), rank=int(higher) + 1,
                               of=max(int(stores), int(with_value), int(higher) + 1))
    return out


def _assistant_table(store_id: str, since_ms: int, until_ms: int, by: Figure) -> Subquery:
    recruits = MemberRecruit
    sales = (select(recruits.assistant_id, _total(StoreSale.paid).label("v"))
             .join(StoreSale, StoreSale.member_id == recruits.member_id)
             .where(recruits.store_id == store_id, StoreSale.store_id == store_id,
                    StoreSale.ts > since_ms, StoreSale.ts <= until_ms)
             .group_by(recruits.assistant_id).subquery())
    joined = (select(recruits.assistant_id, func.count().label("v"))
              .where(recruits.store_id == store_id, recruits.joined_ms > since_ms,
                     recruits.joined_ms <= until_ms)
              .group_by(recruits.assistant_id).subquery())
    redeemed = (select(recruits.assistant_id, func.count().label("v"))
                .select_from(CouponRedemption)
                .join(Coupon, Coupon.code == CouponRedemption.code)
                .join(recruits, recruits.member_id == Coupon.member_id)
                .where(recruits.store_id == store_id, CouponRedemption.store_id == store_id,
                       CouponRedemption.redeemed_ms > since_ms,
                       CouponRedemption.redeemed_ms <= until_ms)
                .group_by(recruits.assistant_id).subquery())
    a = StaffAssistant
    figures = {
        "sales": func.coalesce(sales.c.v, 0),
        "new_members": func.coalesce(joined.c.v, 0),
        "coupons_redeemed": func.coalesce(redeemed.c.v, 0),
    }
    rank = func.rank().over(order_by=figures[by].desc())
    return (select(a.assistant_id, a.display_name, a.active,
                   *(cast(v, BigInteger).label(k) for k, v in figures.items()),
                   rank.label("rank"), cast(figures[by], BigInteger).label("key"))
            .outerjoin(sales, sales.c.assistant_id == a.assistant_id)
            .outerjoin(joined, joined.c.assistant_id == a.assistant_id)
            .outerjoin(redeemed, redeemed.c.assistant_id == a.assistant_id)
            .where(a.store_id == store_id).subquery())


def assistants(session: Session, *, store_id: str, since_ms: int, until_ms: int,
               by: Figure, limit: int, after: tuple[int, str] | None = None
               ) -> list[AssistantRow]:
    """The store's assistants (retired ones too: their recruits still count) with their
    figures, best by ``by`` first; ``limit + 1`` rows after ``after`` (figure, id)."""
    table = _assistant_table(store_id, since_ms, until_ms, by)
    c = table.c
    stmt = (select(c.assistant_id, c.display_name, c.active, c.sales, c.new_members,
                   c.coupons_redeemed, c.rank)
            .order_by(c.key.desc(), c.assistant_id).limit(limit + 1))
    if after is not None:
        stmt = stmt.where(or_(c.key < literal(after[0]),
                              and_(c.key == literal(after[0]), c.assistant_id > after[1])))
    return [AssistantRow(assistant_id=i, display_name=n, active=bool(act), sales=int(s),
                         new_members=int(nm), coupons_redeemed=int(cr), rank=int(r))
            for i, n, act, s, nm, cr, r in session.execute(stmt).all()]


def cursor_key(row: AssistantRow, by: Figure) -> tuple[int, str]:
    return int(getattr(row, by)), row.assistant_id
