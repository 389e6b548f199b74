"""A store's offline member snapshot (cloud.loyalty.store_snapshot, decision 0064), on
SQLite and PostgreSQL: the right members, their balances (less what they owe), coupons,
salted phone entries and day keys that check the member's codes."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models_loyalty import Tier
from cloud.db.models_members import MemberHomeStore
from cloud.loyalty import points, spends, stored_value
from cloud.loyalty.coupons import CouponBenefit, create_campaign, issue_coupon
from cloud.loyalty.members import phone_hash
from cloud.loyalty.program import DAY_MS, LoyaltyProgram
from cloud.loyalty.store_snapshot import MAX_MEMBERS, SnapshotConfig, build
from protocols import membercode as mc
from protocols.clock import ManualClock
from protocols.member_snapshot import MemberSnapshot, as_document, phone_entry
from protocols.member_snapshot import phone_hash as box_phone_hash
from tests.cloud.loyalty.conftest import HASH_KEY, new_member

SECRET = b"test-member-code-secret-0001"
PROGRAM = LoyaltyProgram()


def home(sessions: sessionmaker[Session], member: str, store: str) -> None:
    with sessions.begin() as s:
        s.add(MemberHomeStore(member_id=member, store_id=store, since_ms=0))


def snapshot(sessions: sessionmaker[Session], clock: ManualClock, store: str = "s1",
             **kw: int) -> MemberSnapshot:
    with sessions() as s:
        return build(s, store, secret=SECRET, now_ms=clock.now_ms(), program=PROGRAM,
                     config=SnapshotConfig(**kw))


def test_home_members_and_members_seen_recently(sessions: sessionmaker[Session],
                                                clock: ManualClock) -> None:
    anna = new_member(sessions, clock, phone="+49 170 0000001")
    ben = new_member(sessions, clock)  # shopped at s1 last week
    carl = new_member(sessions, clock)  # shopped at s1 two months ago
    dora = new_member(sessions, clock)  # home store s2
    erik = new_member(sessions, clock)  # spent at s1 yesterday
    home(sessions, anna, "s1")
    home(sessions, dora, "s2")
    with sessions.begin() as s:
        now = clock.now_ms()
        points.credit(s, ben, 500, op_id="earn:s1/sale-1", now_ms=now - 7 * DAY_MS,
                      ttl_ms=None)
        points.credit(s, carl, 500, op_id="earn:s1/sale-2", now_ms=now - 60 * DAY_MS,
                      ttl_ms=None)
        points.credit(s, dora, 500, op_id="earn:s2/sale-3", now_ms=now, ttl_ms=None)
        points.credit(s, erik, 40, op_id="earn:s3/sale-4", now_ms=now, ttl_ms=None)
        stored_value.apply(s, anna, 2_500, kind="load", ref="load-1", now_ms=now)
        s.add(Tier(name="gold", min_points=400))
        s.add(Tier(name="base", min_points=0))
    with sessions.begin() as s:
        spends.settle(s, store_id="s1", spend=spends.Spend(
            spend_id="sp-1", member_id=erik, unit="points", amount=100, spent_ms=0),
            now_ms=clock.now_ms() - DAY_MS)
        campaign = create_campaign(s, name="welcome", trigger="manual",
                                   benefit=CouponBenefit(amount_off=300),
                                   now_ms=clock.now_ms())
        coupon, _ = issue_coupon(s, campaign.campaign_id, anna, source_key="manual:1",
                                 now_ms=clock.now_ms())
    doc = snapshot(sessions, clock)
    assert list(doc.members) == [anna, erik, ben]  # home first, then most recent
    assert doc.store_id == "s1" and doc.omitted == 0
    a, b, e = doc.members[anna], doc.members[ben], doc.members[erik]
    assert (a.home, a.points, a.stored_value, a.tier) == (True, 0, 2_500, "base")
    assert [(c.code, c.engine_code) for c in a.coupons] == [(coupon.code, campaign.engine_code)]
    assert (b.home, b.points, b.tier) == (False, 500, "gold")
    assert (e.points, e.coupons) == (-60, ())  # spent 100 offline with 40: owes 60
    # the phone is there only salted: found from the cloud's keyed hash, not in clear
    assert a.phone == phone_entry(doc.salt, phone_hash(HASH_KEY, "0049 1700000001"))
    assert "1700000001" not in doc.model_dump_json()
    assert b.phone is None
    # a fresh salt every snapshot
    assert snapshot(sessions, clock).members[anna].phone != a.phone
    # another store's snapshot has its own members
    assert list(snapshot(sessions, clock, "s2").members) == [dora]


def test_day_keys_check_the_members_codes(sessions: sessionmaker[Session],
                                          clock: ManualClock) -> None:
    clock.advance(3600)
    anna = new_member(sessions, clock)
    home(sessions, anna, "s1")
    doc = snapshot(sessions, clock)
    today = mc.day_of(clock.now_ms())
    keys = doc.members[anna].keys
    assert sorted(keys) == [str(today), str(today + 1)]

    def lookup(member: str, day: int) -> bytes | None:
        text = doc.members[member].keys.get(str(day)) if member in doc.members else None
        return mc.decode_key(text) if text else None

    for at in (clock.now_ms(), clock.now_ms() + DAY_MS):  # today's and tomorrow's codes
        code = mc.make(mc.day_key(SECRET, anna, day=mc.day_of(at)), anna, now_ms=at)
        assert mc.verify(code, keys=lookup, now_ms=at, guard=mc.ReplayGuard()).member_id == anna
    # the day after tomorrow needs the next snapshot
    later = clock.now_ms() + 2 * DAY_MS
    code = mc.make(mc.day_key(SECRET, anna, day=mc.day_of(later)), anna, now_ms=later)
    assert lookup(anna, mc.day_of(later)) is None
    try:
        mc.verify(code, keys=lookup, now_ms=later, guard=mc.ReplayGuard())
    except mc.CodeRefused as err:
        assert err.reason == "unknown_member"
    else:
        raise AssertionError("a code beyond the snapshot's days was accepted")


def test_the_largest_stores_are_cut_and_say_so(sessions: sessionmaker[Session],
                                               clock: ManualClock) -> None:
    members = [new_member(sessions, clock, phone=f"+49 170 {i:07d}") for i in range(5)]
    for m in members:
        home(sessions, m, "s1")
    doc = snapshot(sessions, clock, max_members=3)
    assert (len(doc.members), doc.omitted) == (3, 2)
    # as published, ~200 bytes a member with a phone entry: MAX_MEMBERS leave the
    # manifest's other documents (schedule, playlists) a third of its 256 KiB
    full = snapshot(sessions, clock)
    empty = full.model_copy(update={"members": {}})
    size = [len(json.dumps(as_document(d), separators=(",", ":"))) for d in (full, empty)]
    per_member = (size[0] - size[1]) / 5
    assert per_member < 220, per_member
    assert size[1] + MAX_MEMBERS * per_member < 176 * 1024
    assert MemberSnapshot.model_validate(as_document(doc)) == doc


def test_the_box_hashes_phones_as_the_cloud_does() -> None:
    for phone in ("+49 170-1234567", "0049 1701234567", "(030) 1234567"):
        assert box_phone_hash(HASH_KEY.get_secret_value().encode(), phone) == \
            phone_hash(HASH_KEY, phone)
