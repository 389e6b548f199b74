"""Real concurrency: threads with their own connections against SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models_loyalty import CouponRedemption, StoredValueEntry
from cloud.loyalty import stored_value
from cloud.loyalty.coupons import CouponBenefit, create_campaign, issue_coupon, redeem_coupon
from cloud.loyalty.errors import CouponUnusable, InsufficientBalance
from protocols.clock import ManualClock
from tests.cloud.loyalty.conftest import new_member

THREADS = 50


def race(n: int, work: Callable[[int], str]) -> list[str]:
    """Run ``work(i)`` in ``n`` threads released together; returns their outcomes."""
    start = threading.Barrier(n)
    results: list[str] = [""] * n

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except Exception as err:  # collected: the test asserts on the outcomes
            results[i] = f"error:{type(err).__name__}:{err}"

    threads = [threading.Thread(target=run, args=(i,), name=f"race-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_fifty_concurrent_redemptions_one_wins(sessions: sessionmaker[Session],
                                               clock: ManualClock) -> None:
    m = new_member(sessions, clock)
    with sessions.begin() as s:
        camp = create_campaign(s, name="welcome", trigger="manual",
                               benefit=CouponBenefit(amount_off=500), now_ms=clock.now_ms())
        code = issue_coupon(s, camp.campaign_id, m, source_key="manual:1",
                            now_ms=clock.now_ms())[0].code

    def redeem(i: int) -> str:
        try:
            with sessions.begin() as s:
                redeem_coupon(s, code, now_ms=clock.now_ms(), store_id="store-1",
                              sale_id=f"sale-{i}")
            return "won"
        except CouponUnusable as err:
            return err.reason

    outcomes = race(THREADS, redeem)
    assert outcomes.count("won") == 1, outcomes
    assert outcomes.count("redeemed") == THREADS - 1, outcomes
    with sessions() as s:
        rows = list(s.scalars(select(CouponRedemption)))
        assert len(rows) == 1 and rows[0].sale_id == f"sale-{outcomes.index('won')}"


def test_stored_value_never_negative_under_concurrency(sessions: sessionmaker[Session],
                                                       clock: ManualClock) -> None:
    m = new_member(sessions, clock)
    with sessions.begin() as s:
        stored_value.apply(s, m, 1_000, kind="load", ref="load-1", now_ms=clock.now_ms())

    def spend(i: int) -> str:
        try:
            with sessions.begin() as s:
                stored_value.apply(s, m, -70, kind="spend", ref=f"sale-{i}",
                                   now_ms=clock.now_ms())
            return "ok"
        except InsufficientBalance:
            return "short"

    outcomes = race(30, spend)
    assert outcomes.count("ok") == 14, outcomes  # 14 * 70 = 980 <= 1000 < 15 * 70
    assert outcomes.count("short") == 16, outcomes
    with sessions() as s:
        assert stored_value.balance(s, m) == 20 == stored_value.ledger_sum(s, m)
        assert len(list(s.scalars(select(StoredValueEntry)))) == 15


def test_stored_value_is_idempotent_by_ref(sessions: sessionmaker[Session],
                                           clock: ManualClock) -> None:
    m = new_member(sessions, clock)
    with sessions.begin() as s:
        stored_value.apply(s, m, 300, kind="load", ref="l", now_ms=clock.now_ms())
        first = stored_value.apply(s, m, -100, kind="spend", ref="x", now_ms=clock.now_ms())
        again = stored_value.apply(s, m, -100, kind="spend", ref="x", now_ms=clock.now_ms())
        assert not first.replayed and again.replayed and again.balance == 200
