"""Referral coupons, two-level commissions (pending, settled, reversed) and the sale
hook through the real ingest batch path (coupon issued once for a duplicated event)."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models_loyalty import Commission, Coupon
from cloud.ingest.batch import BatchProcessor
from cloud.ingest.hooks import PostCommitHooks
from cloud.loyalty import distribution, points
from cloud.loyalty.coupons import CouponBenefit, SaleRules, create_campaign
from cloud.loyalty.ingest import LoyaltyHook
from cloud.loyalty.members import get_member
from cloud.loyalty.metrics import LoyaltyMetrics
from cloud.loyalty.program import LoyaltyProgram
from protocols import topics
from protocols.clock import ManualClock
from tests.cloud.loyalty.conftest import new_member

PROGRAM = LoyaltyProgram(return_window_days=14, commission_bp=1_000, invitation_bp=200)


def event(kind: str, event_id: str, data: dict[str, object], *, seq: int = 1,
          ts: int = 1_767_225_600_000) -> tuple[str, bytes]:
    body = {"v": 1, "id": event_id, "kind": kind, "store_id": "store-1", "seq": seq, "ts": ts,
            "data": data}
    return topics.evt("store-1", kind), json.dumps(body).encode()


def processor(sessions: sessionmaker[Session], clock: ManualClock,
              registry: CollectorRegistry) -> BatchProcessor:
    hooks = PostCommitHooks(registry=registry)
    hooks.register("loyalty", {"sale", "refund"},
                   LoyaltyHook(program=PROGRAM, metrics=LoyaltyMetrics(registry)))
    return BatchProcessor(sessions, clock=clock, max_payload=65_536, hooks=hooks)


def test_referral_gives_both_a_coupon(sessions: sessionmaker[Session],
                                      clock: ManualClock) -> None:
    with sessions.begin() as s:
        create_campaign(s, name="invite a friend", trigger="referral",
                        benefit=CouponBenefit(amount_off=300), now_ms=clock.now_ms(),
                        campaign_id="referral")
    a = new_member(sessions, clock)
    b = new_member(sessions, clock, referred_by=a)
    with sessions.begin() as s:
        made = distribution.reward_referral(s, get_member(s, b), program=PROGRAM,
                                            now_ms=clock.now_ms())
        again = distribution.reward_referral(s, get_member(s, b), program=PROGRAM,
                                             now_ms=clock.now_ms())
        assert sorted(c.member_id for c in made) == sorted([a, b])
        assert {c.code for c in again} == {c.code for c in made}
        assert len(list(s.scalars(select(Coupon)))) == 2


def test_two_level_commissions_settle_after_the_window(
    sessions: sessionmaker[Session], clock: ManualClock, registry: CollectorRegistry
) -> None:
    a = new_member(sessions, clock, is_distributor=True)
    b = new_member(sessions, clock, is_distributor=True, recruited_by=a)
    c = new_member(sessions, clock)
    proc = processor(sessions, clock, registry)
    totals = {"paid": 12_345, "points_earned": 123}
    sale: dict[str, object] = {"member_id": c, "shared_by": b, "totals": totals}
    proc.process([event("sale", "sale-1", sale)])
    with sessions() as s:
        rows = {(r.beneficiary_id, r.level): r for r in s.scalars(select(Commission))}
        assert {k: (r.points, r.status) for k, r in rows.items()} == {
            (b, 1): (1_234, "pending"), (a, 2): (246, "pending")}
        assert points.balance(s, a) == points.balance(s, b) == 0
        assert points.balance(s, c) == 123
    clock.advance(13 * 86_400)
    with sessions.begin() as s:
        assert distribution.settle_commissions(s, now_ms=clock.now_ms(), program=PROGRAM) == 0
    clock.advance(86_400)
    with sessions.begin() as s:
        assert distribution.settle_commissions(s, now_ms=clock.now_ms(), program=PROGRAM) == 2
    with sessions.begin() as s:
        assert distribution.settle_commissions(s, now_ms=clock.now_ms(), program=PROGRAM) == 0
        assert (points.balance(s, b), points.balance(s, a)) == (1_234, 246)
    # A late return takes the settled commissions back from the ledger.
    proc.process([event("refund", "refund-late", {"sale_id": "sale-1", "member_id": c,
                                                  "points_reversed": 123}, seq=2)])
    with sessions() as s:
        assert (points.balance(s, b), points.balance(s, a), points.balance(s, c)) == (0, 0, 0)
        assert {r.status for r in s.scalars(select(Commission))} == {"reversed"}


def test_return_inside_the_window_cancels_pending(
    sessions: sessionmaker[Session], clock: ManualClock, registry: CollectorRegistry
) -> None:
    a = new_member(sessions, clock, is_distributor=True)
    b = new_member(sessions, clock)
    proc = processor(sessions, clock, registry)
    proc.process([event("sale", "sale-2", {"member_id": b, "shared_by": a,
                                           "totals": {"paid": 5_000}})])
    clock.advance(86_400)
    proc.process([event("refund", "refund-2", {"sale_id": "sale-2", "member_id": b}, seq=2)])
    clock.advance(30 * 86_400)
    with sessions.begin() as s:
        assert distribution.settle_commissions(s, now_ms=clock.now_ms(), program=PROGRAM) == 0
        assert points.balance(s, a) == 0
        assert [r.status for r in s.scalars(select(Commission))] == ["reversed"]


def test_payment_triggered_coupon_issued_once(
    sessions: sessionmaker[Session], clock: ManualClock, registry: CollectorRegistry
) -> None:
    m = new_member(sessions, clock)
    with sessions.begin() as s:
        create_campaign(s, name="spend 50 get 5", trigger="sale",
                        benefit=CouponBenefit(amount_off=500), now_ms=clock.now_ms(),
                        rules=SaleRules(min_paid=5_000))
    proc = processor(sessions, clock, registry)
    big = event("sale", "sale-big", {"member_id": m, "totals": {"paid": 6_000,
                                                                "points_earned": 60}})
    small = event("sale", "sale-small", {"member_id": m, "totals": {"paid": 100}}, seq=2)
    proc.process([big, small])
    proc.process([big])  # redelivered after a crash before the acknowledgement
    proc.process([big, big])
    with sessions() as s:
        coupons = list(s.scalars(select(Coupon)))
        assert [c.source_key for c in coupons] == ["sale:store-1/sale-big"]
        assert points.balance(s, m) == 60  # earned once, too
    assert registry.get_sample_value("storefleet_loyalty_coupons_issued_total",
                                     {"trigger": "sale"}) == 1


def test_bad_sale_payload_is_counted_not_fatal(
    sessions: sessionmaker[Session], clock: ManualClock, registry: CollectorRegistry
) -> None:
    proc = processor(sessions, clock, registry)
    result = proc.process([event("sale", "sale-bad", {"member_id": 5, "totals": "x"}),
                           event("sale", "sale-ghost", {"member_id": "nobody"}, seq=2)])
    assert result.outcome.events_stored == 2
    assert registry.get_sample_value("storefleet_loyalty_rejected_total",
                                     {"reason": "bad_sale"}) == 1
    assert registry.get_sample_value("storefleet_loyalty_rejected_total",
                                     {"reason": "unknown_member"}) == 1
