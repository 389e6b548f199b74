"""Each store's offline member snapshot and the members' day keys (decision 0064).

    doc = build(session, "S001", secret=secret, now_ms=now, program=program)
    keys = day_keys(secret, member_id, now_ms=now)   # today's and tomorrow's, base64url

A store's members are those whose home store it is (``member_home_stores``) and those
seen there within ``seen_days`` (a spend its box asked for, or points earned by a sale
there: points ops ``earn:<store>/...``), home members first, then the most recently
seen, at most ``max_members`` (the rest are counted in ``omitted``: the box asks the
cloud for them while it can). Each carries tier, balances (less what the member owes:
``cloud.loyalty.spends``), active coupons, the salted phone entry and the member's day
keys for today and tomorrow (UTC), so a snapshot refreshed daily keeps every code
valid until the next one arrives, and a box never holds the chain secret.

Balances, tiers and coupons are read for all of the store's members at once (one query
each, ``IN`` lists of ``CHUNK`` ids), not per member.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import (
    Campaign,
    Coupon,
    CouponRedemption,
    Member,
    PointsEntry,
    PointsOp,
    StoredValueAccount,
)
from cloud.db.models_members import MemberHomeStore, MemberSpend
from cloud.loyalty.program import DAY_MS, LoyaltyProgram
from cloud.loyalty.tiers import list_tiers, tier_for_points
from protocols import membercode
from protocols.member_snapshot import CouponHeld, MemberSnapshot, SnapshotMember, phone_entry

CHUNK = 500  # ids per IN list: far below SQLite's 32,766 bound variables
# Inline in the content manifest (256 KiB for all its documents): ~200 bytes a member
# with a phone entry (measured, decision 0064), so 800 take ~160 KiB and leave the
# schedule and playlists room; a store with more asks the cloud for the rest online.
MAX_MEMBERS = 800
SEEN_DAYS = 30  # a member who shopped here within a month is likely back


@dataclass(frozen=True, slots=True)
class SnapshotConfig:
    max_members: int = MAX_MEMBERS
    seen_days: int = SEEN_DAYS


def day_keys(secret: bytes, member_id: str, *, now_ms: int, days: int = 2) -> dict[str, str]:
    """The member's keys from today (UTC) on, ``{day: base64url key}``."""
    today = membercode.day_of(now_ms)
    return {str(d): membercode.encode_key(membercode.day_key(secret, member_id, day=d))
            for d in range(today, today + days)}


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for i in range(0, len(ids), CHUNK):
        yield list(ids[i:i + CHUNK])


def store_members(session: Session, store_id: str, *, now_ms: int,
                  config: SnapshotConfig) -> tuple[list[tuple[str, bool]], int]:
    """``([(member_id, home)], omitted)``: home members first, then the most recently
    seen, at most ``config.max_members``."""
    home = list(session.scalars(select(MemberHomeStore.member_id)
                                .where(MemberHomeStore.store_id == store_id)
                                .order_by(MemberHomeStore.member_id)))
    since = now_ms - config.seen_days * DAY_MS
    seen: dict[str, int] = {}
    spent = select(MemberSpend.member_id, func.max(MemberSpend.recorded_ms)).where(
        MemberSpend.store_id == store_id, MemberSpend.recorded_ms >= since,
    ).group_by(MemberSpend.member_id)
    # earn op ids carry the store (decision 0026): "earn:<store>/<sale event id>"
    earned = select(PointsOp.member_id, func.max(PointsOp.created_ms)).where(
        PointsOp.op_id.startswith(f"earn:{store_id}/", autoescape=True),
        PointsOp.created_ms >= since,
    ).group_by(PointsOp.member_id)
    for stmt in (spent, earned):
        for member_id, at in session.execute(stmt):
            seen[member_id] = max(seen.get(member_id, 0), int(at))
    homes = set(home)
    recent = sorted((m for m in seen if m not in homes), key=lambda m: (-seen[m], m))
    everyone = [(m, True) for m in home] + [(m, False) for m in recent]
    return everyone[:config.max_members], max(0, len(everyone) - config.max_members)


def _sums(session: Session, ids: Sequence[str],
          stmt_of: Callable[[list[str]], Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in _chunks(ids):
        for member_id, total in session.execute(stmt_of(chunk)):
            out[member_id] = int(total or 0)
    return out


def _owed(session: Session, ids: Sequence[str]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for chunk in _chunks(ids):
        for member_id, unit, total in session.execute(
                select(MemberSpend.member_id, MemberSpend.unit, func.sum(MemberSpend.shortfall))
                .where(MemberSpend.member_id.in_(chunk), MemberSpend.status == "short")
                .group_by(MemberSpend.member_id, MemberSpend.unit)):
            out[(member_id, unit)] = int(total or 0)
    return out


def _coupons(session: Session, ids: Sequence[str], *,
             now_ms: int) -> dict[str, list[CouponHeld]]:
    out: dict[str, list[CouponHeld]] = defaultdict(list)
    redeemed = select(CouponRedemption.code).where(CouponRedemption.code == Coupon.code)
    for chunk in _chunks(ids):
        for coupon, engine_code in session.execute(
                select(Coupon, Campaign.engine_code)
                .join(Campaign, Campaign.campaign_id == Coupon.campaign_id)
                .where(Coupon.member_id.in_(chunk), Coupon.expires_ms > now_ms,
                       Coupon.expired_ms.is_(None), Campaign.active, ~redeemed.exists())
                .order_by(Coupon.expires_ms, Coupon.code)):
            out[coupon.member_id].append(CouponHeld(code=coupon.code, engine_code=engine_code,
                                                    expires_ms=coupon.expires_ms))
    return out


def build(session: Session, store_id: str, *, secret: bytes, now_ms: int,
          program: LoyaltyProgram, config: SnapshotConfig | None = None) -> MemberSnapshot:
    """The store's ``members`` document as of ``now_ms`` (unsigned: the manifest is)."""
    config = config or SnapshotConfig()
    chosen, omitted = store_members(session, store_id, now_ms=now_ms, config=config)
    ids = [m for m, _ in chosen]
    points_left = _sums(session, ids, lambda c: select(
        PointsEntry.member_id, func.sum(PointsEntry.points))
        .where(PointsEntry.member_id.in_(c)).group_by(PointsEntry.member_id))
    window = now_ms - program.tier_window_ms
    earned = _sums(session, ids, lambda c: select(
        PointsEntry.member_id, func.sum(PointsEntry.points))
        .where(PointsEntry.member_id.in_(c), PointsEntry.created_ms > window,
               PointsEntry.created_ms <= now_ms,
               or_(PointsEntry.kind.in_(("earn", "commission")),
                   and_(PointsEntry.kind == "reverse", PointsEntry.points < 0)))
        .group_by(PointsEntry.member_id))
    stored = _sums(session, ids, lambda c: select(
        StoredValueAccount.member_id, StoredValueAccount.balance)
        .where(StoredValueAccount.member_id.in_(c)))
    phones: dict[str, str | None] = {}
    for chunk in _chunks(ids):
        for member_id, hashed in session.execute(select(Member.member_id, Member.phone_hash)
                                                 .where(Member.member_id.in_(chunk))):
            phones[member_id] = hashed
    owed = _owed(session, ids)
    coupons = _coupons(session, ids, now_ms=now_ms)
    tiers = list_tiers(session)
    salt = os.urandom(16).hex()  # a new salt each snapshot: entries join nothing else
    members = {}
    for member_id, is_home in chosen:
        phone_hash = phones.get(member_id)
        members[member_id] = SnapshotMember(
            tier=tier_for_points(tiers, max(0, earned.get(member_id, 0))),
            points=points_left.get(member_id, 0) - owed.get((member_id, "points"), 0),
            stored_value=stored.get(member_id, 0) - owed.get((member_id, "stored_value"), 0),
            coupons=tuple(coupons.get(member_id, ())),
            phone=phone_entry(salt, phone_hash) if phone_hash else None,
            keys=day_keys(secret, member_id, now_ms=now_ms), home=is_home)
    return MemberSnapshot(version=str(now_ms), store_id=store_id, created_ms=now_ms,
                          salt=salt, members=members, omitted=omitted)
