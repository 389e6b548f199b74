"""The one-tap coupon: an assistant gives a lapsed home member a win-back coupon.

Idempotent without a key from the client: the coupon belongs to the member's lapse,
named by their last activity (``lapses.last_activity``: last purchase, or joining).
Pressing the button again, on two phones at once or after a lost answer, gives the
same coupon (``staff_coupons``' unique (store, member, lapse) and the coupon's
``source_key`` ``winback:<store>/<lapse ms>``); once the member buys again and lapses
again, they may get another. The member row is locked first, so two presses at the
same moment are applied one after the other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import Campaign, Coupon
from cloud.db.models_members import MemberHomeStore
from cloud.db.models_staff import StaffCoupon
from cloud.loyalty.coupons import issue_coupon
from cloud.loyalty.errors import NotFound
from cloud.loyalty.members import get_member
from cloud.loyalty.program import DAY_MS
from cloud.staff.errors import NoCampaign, NotLapsed
from cloud.staff.lists import last_activity

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Given:
    code: str
    member_id: str
    campaign_id: str
    expires_ms: int
    lapse_ms: int
    issued_by: str
    replayed: bool


def give(session: Session, *, store_id: str, member_id: str, campaign_id: str,
         lapsed_days: int, issued_by: str, now_ms: int) -> Given:
    """The win-back coupon of ``member_id``'s current lapse (issued now, or the one
    already given). ``NotFound`` unless they are the store's home member; ``NotLapsed``
    if they were active within ``lapsed_days``; ``NoCampaign`` without the campaign."""
    home = session.get(MemberHomeStore, member_id)
    if home is None or home.store_id != store_id:
        raise NotFound("member", f"{member_id} at store {store_id}")
    if session.get(Campaign, campaign_id) is None:
        raise NoCampaign(campaign_id)
    get_member(session, member_id, for_update=True)  # one press at a time per member
    lapse_ms = last_activity(session, member_id)
    assert lapse_ms is not None  # the member row exists (locked above)
    since_ms = now_ms - lapsed_days * DAY_MS
    done = session.scalar(select(StaffCoupon).where(
        StaffCoupon.store_id == store_id, StaffCoupon.member_id == member_id,
        StaffCoupon.lapse_ms == lapse_ms))
    if done is not None:
        coupon = session.get(Coupon, done.code)
        assert coupon is not None
        return Given(code=done.code, member_id=member_id, campaign_id=coupon.campaign_id,
                     expires_ms=coupon.expires_ms, lapse_ms=lapse_ms,
                     issued_by=done.issued_by, replayed=True)
    if lapse_ms > since_ms:
        raise NotLapsed(member_id, last_ms=lapse_ms, since_ms=since_ms)
    coupon, _ = issue_coupon(session, campaign_id, member_id,
                             source_key=f"winback:{store_id}/{lapse_ms}", now_ms=now_ms)
    session.add(StaffCoupon(code=coupon.code, store_id=store_id, member_id=member_id,
                            lapse_ms=lapse_ms, issued_by=issued_by, issued_ms=now_ms))
    session.flush()
    logger.info("store %s: win-back coupon %s for member %s by %s", store_id, coupon.code,
                member_id, issued_by)
    return Given(code=coupon.code, member_id=member_id, campaign_id=campaign_id,
                 expires_ms=coupon.expires_ms, lapse_ms=lapse_ms, issued_by=issued_by,
                 replayed=False)
