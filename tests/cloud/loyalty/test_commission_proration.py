"""Partial returns reverse commissions in proportion to the refunded amount (decision
0015): direct commission and invitation reward, pending and settled, through the real
ingest path, on SQLite and PostgreSQL."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models_loyalty import Commission, CommissionReversal
from cloud.loyalty import distribution, points
from cloud.loyalty.distribution import reversal_target
from protocols.clock import ManualClock
from tests.cloud.loyalty.conftest import new_member
from tests.cloud.loyalty.test_distribution import PROGRAM, event, processor

DAY_S = 86_400


def commissions(sessions: sessionmaker[Session]) -> dict[int, tuple[int, int, str]]:
    """level -> (points, reversed_points, status)."""
    with sessions() as s:
        return {r.level: (r.points, r.reversed_points, r.status)
                for r in s.scalars(select(Commission))}


def test_reversal_target_rounds_up_and_caps() -> None:
    assert reversal_target(1_234, 12_345, 0) == (0, 0)
    assert reversal_target(1_234, 12_345, 4_000) == (400, 4_000)  # 399.84 -> 400
    assert reversal_target(1_234, 12_345, 12_345) == (1_234, 12_345)
    assert reversal_target(1_234, 12_345, 99_999) == (1_234, 12_345)  # capped at the base
    assert reversal_target(1_234, None, 5) == (1_234, None)  # a row from before 0004
    assert reversal_target(1_234, 12_345, None) == (1_234, 12_345)  # a refund without paid


def test_many_partial_returns_never_reverse_more_than_one_return_of_the_total() -> None:
    rng = random.Random(7)
    for _ in range(500):
        base = rng.randint(1, 100_000)
        earned = base * rng.choice((100, 500, 1_000, 2_500)) // 10_000
        refunded = reversed_ = 0
        while refunded < base:
            refunded += rng.randint(1, max(1, base // 3))
            target, _ = reversal_target(earned, base, refunded)
            assert target >= reversed_  # never given back by a later return
            reversed_ = target
            capped = min(refunded, base)
            # Exactly what one return of the same total reverses, within one rounding step.
            assert earned * capped / base <= reversed_ < earned * capped / base + 1
        assert reversed_ == earned


def test_partial_returns_prorate_both_levels_pending_then_settled(
    sessions: sessionmaker[Session], clock: ManualClock, registry: CollectorRegistry
) -> None:
    a = new_member(sessions, clock, is_distributor=True)
    b = new_member(sessions, clock, is_distributor=True, recruited_by=a)
    buyer = new_member(sessions, clock)
    proc = processor(sessions, clock, registry)
    proc.process([event("sale", "sale-p", {"member_id": buyer, "shared_by": b,
                                           "totals": {"paid": 12_345}})])
    # 10 % and 2 % of 12,345, floored.
    assert commissions(sessions) == {1: (1_234, 0, "pending"), 2: (246, 0, "pending")}

    # Inside the window: 4,000 of 12,345 back -> ceil(399.84) and ceil(79.71) cancelled.
    first = event("refund", "refund-1", {"sale_id": "sale-p", "member_id": buyer,
                                         "paid": 4_000}, seq=2)
    proc.process([first])
    proc.process([first])  # redelivered: applied once
    assert commissions(sessions) == {1: (1_234, 400, "pending"), 2: (246, 80, "pending")}

    clock.advance(PROGRAM.return_window_days * DAY_S)
    with sessions.begin() as s:
        assert distribution.settle_commissions(s, now_ms=clock.now_ms(), program=PROGRAM) == 2
    with sessions() as s:
        assert (points.balance(s, b), points.balance(s, a)) == (834, 166)

    # After settlement: 5,000 more (9,000 of 12,345) -> 900 / 180 reversed in all.
    proc.process([event("refund", "refund-2", {"sale_id": "sale-p", "member_id": buyer,
                                               "paid": 5_000}, seq=3)])
    assert commissions(sessions) == {1: (1_234, 900, "settled"), 2: (246, 180, "settled")}
    with sessions() as s:
        assert (points.balance(s, b), points.balance(s, a)) == (334, 66)

    # More "refunded" than was left is capped: everything goes, nothing more.
    proc.process([event("refund", "refund-3", {"sale_id": "sale-p", "member_id": buyer,
                                               "paid": 5_000}, seq=4)])
    proc.process([event("refund", "refund-4", {"sale_id": "sale-p", "member_id": buyer,
                                               "paid": 1_000}, seq=5)])
    assert commissions(sessions) == {1: (1_234, 1_234, "reversed"),
                                     2: (246, 246, "reversed")}
    with sessions() as s:
        assert (points.balance(s, b), points.balance(s, a)) == (0, 0)
        per_level = dict(s.execute(
            select(Commission.level, func.sum(CommissionReversal.points))
            .join(Commission, Commission.id == CommissionReversal.commission_id)
            .group_by(Commission.level)).all())
        assert per_level == {1: 1_234, 2: 246}  # the reversals add up to what was earned
    assert registry.get_sample_value("storefleet_loyalty_commissions_total",
                                     {"status": "partly_reversed"}) == 4
    assert registry.get_sample_value("storefleet_loyalty_commissions_total",
                                     {"status": "reversed"}) == 2


def test_full_return_and_refund_without_paid_reverse_everything(
    sessions: sessionmaker[Session], clock: ManualClock, registry: CollectorRegistry
) -> None:
    a = new_member(sessions, clock, is_distributor=True)
    buyer = new_member(sessions, clock)
    proc = processor(sessions, clock, registry)
    proc.process([event("sale", "sale-f", {"member_id": buyer, "shared_by": a,
                                           "totals": {"paid": 999}}),
                  event("sale", "sale-g", {"member_id": buyer, "shared_by": a,
                                           "totals": {"paid": 5_000}}, seq=2)])
    proc.process([event("refund", "refund-f", {"sale_id": "sale-f", "paid": 999}, seq=3),
                  event("refund", "refund-g", {"sale_id": "sale-g"}, seq=4)])  # an old till
    with sessions() as s:
        rows = {r.sale_id: (r.points, r.reversed_points, r.status)
                for r in s.scalars(select(Commission))}
    # Commissions name their sale by store and event id (decision 0026).
    assert rows == {"store-1/sale-f": (99, 99, "reversed"),
                    "store-1/sale-g": (500, 500, "reversed")}
    clock.advance(PROGRAM.return_window_days * DAY_S)
    with sessions.begin() as s:
        assert distribution.settle_commissions(s, now_ms=clock.now_ms(), program=PROGRAM) == 0
        assert points.balance(s, a) == 0
