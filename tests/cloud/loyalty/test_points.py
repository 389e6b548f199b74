"""The points ledger: sum = balance, nearest expiry first, expiry, idempotency, tiers."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models_loyalty import PointsEntry, Tier
from cloud.loyalty import points
from cloud.loyalty.errors import InsufficientBalance
from cloud.loyalty.program import DAY_MS
from cloud.loyalty.tiers import earned_in_window, member_tier
from protocols.clock import ManualClock
from tests.cloud.loyalty.conftest import new_member

TTL = 10 * DAY_MS


def test_spend_takes_nearest_expiry_first(sessions: sessionmaker[Session],
                                          clock: ManualClock) -> None:
    m = new_member(sessions, clock)
    with sessions.begin() as s:
        late = points.credit(s, m, 100, op_id="a", now_ms=clock.now_ms(), ttl_ms=30 * DAY_MS)
        soon = points.credit(s, m, 50, op_id="b", now_ms=clock.now_ms(), ttl_ms=5 * DAY_MS)
        forever = points.credit(s, m, 10, op_id="c", now_ms=clock.now_ms(), ttl_ms=None)
        assert (late.points, soon.points, forever.points) == (100, 50, 10)
        points.spend(s, m, 70, op_id="spend-1", now_ms=clock.now_ms())
    with sessions() as s:
        rows = list(s.scalars(select(PointsEntry).where(PointsEntry.op_id == "spend-1")))
        lot_of: dict[str | None, str] = {e.id: e.op_id for e in s.scalars(select(PointsEntry).where(
            PointsEntry.lot_id.is_(None)))}
        consumed = sorted((lot_of[r.lot_id], r.points) for r in rows)
        # 50 from the lot expiring in 5 days, then 20 from the 30-day lot.
        assert consumed == [("a", -20), ("b", -50)]
        assert [(lot.remaining) for lot in points.lots(s, m)] == [80, 10]
        assert points.balance(s, m) == 90


def test_expiry_and_spend_idempotency(sessions: sessionmaker[Session],
                                      clock: ManualClock) -> None:
    m = new_member(sessions, clock)
    with sessions.begin() as s:
        points.credit(s, m, 40, op_id="e1", now_ms=clock.now_ms(), ttl_ms=TTL)
        points.spend(s, m, 15, op_id="s1", now_ms=clock.now_ms())
        again = points.spend(s, m, 15, op_id="s1", now_ms=clock.now_ms())
        assert again.replayed and points.balance(s, m) == 25
    clock.advance(TTL / 1000)
    with sessions.begin() as s:
        assert points.expire_due(s, now_ms=clock.now_ms()) == 25
        assert points.expire_due(s, now_ms=clock.now_ms()) == 0
        assert points.balance(s, m) == 0
        with pytest.raises(InsufficientBalance):
            points.spend(s, m, 1, op_id="s2", now_ms=clock.now_ms())


ops = st.lists(st.tuples(st.sampled_from(["earn", "spend", "expire", "reverse", "wait"]),
                         st.integers(min_value=1, max_value=300)), min_size=1, max_size=25)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=ops)
def test_ledger_sum_is_balance(sessions: sessionmaker[Session], seq: list[tuple[str, int]]) -> None:
    clock = ManualClock()
    m = new_member(sessions, clock)
    expected_floor = 0
    for i, (op, n) in enumerate(seq):
        with sessions.begin() as s:
            if op == "earn":
                points.credit(s, m, n, op_id=f"{m}-e{i}", now_ms=clock.now_ms(),
                              ttl_ms=(n % 7 + 1) * DAY_MS)
            elif op == "spend":
                try:
                    points.spend(s, m, n, op_id=f"{m}-s{i}", now_ms=clock.now_ms())
                except InsufficientBalance:
                    pass
            elif op == "reverse":
                points.take_back(s, m, n, op_id=f"{m}-r{i}", now_ms=clock.now_ms())
            elif op == "expire":
                points.expire_due(s, now_ms=clock.now_ms(), member_id=m)
            else:
                clock.advance(n * 3600)
        with sessions() as s:
            total = points.balance(s, m)
            lots = points.lots(s, m)
            assert total == sum(lot.remaining for lot in lots) >= expected_floor
            entries = list(s.scalars(select(PointsEntry).where(PointsEntry.member_id == m)))
            assert sum(e.points for e in entries) == total
            # Every consumption names a lot of the same member.
            lot_ids = {e.id for e in entries if e.lot_id is None}
            assert all(e.lot_id in lot_ids for e in entries if e.lot_id is not None)


def test_tier_over_rolling_window(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    m = new_member(sessions, clock)
    window = 30 * DAY_MS
    with sessions.begin() as s:
        s.add_all([Tier(name="silver", min_points=100, multiplier_bp=12_500, discount_bp=0,
                        prices={}),
                   Tier(name="gold", min_points=500, multiplier_bp=15_000, discount_bp=500,
                        prices={})])
        points.credit(s, m, 400, op_id="t1", now_ms=clock.now_ms(), ttl_ms=None)
    with sessions() as s:
        assert member_tier(s, m, now_ms=clock.now_ms(), window_ms=window) == "silver"
    clock.advance(20 * 86_400)
    with sessions.begin() as s:
        points.credit(s, m, 150, op_id="t2", now_ms=clock.now_ms(), ttl_ms=None)
        assert member_tier(s, m, now_ms=clock.now_ms(), window_ms=window) == "gold"
    clock.advance(11 * 86_400)  # the 400 leave the window; 150 stay
    with sessions() as s:
        assert earned_in_window(s, m, now_ms=clock.now_ms(), window_ms=window) == 150
        assert member_tier(s, m, now_ms=clock.now_ms(), window_ms=window) == "silver"
    clock.advance(20 * 86_400)
    with sessions() as s:
        assert member_tier(s, m, now_ms=clock.now_ms(), window_ms=window) is None
