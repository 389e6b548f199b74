"""The retail jobs scheduler (decision 0015): a commission past its window settles exactly
once even when two schedulers (two cloud replicas) run at the same time; points and
coupons expire; the loop runs in the API lifespan and is off when its interval is 0.
SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models_loyalty import Commission, Coupon, JobLease, PointsEntry
from cloud.loyalty import distribution, points
from cloud.loyalty.coupons import CouponBenefit, create_campaign, issue_coupon, redeem_coupon
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from cloud.scheduler import Job, JobMetrics, JobScheduler, retail_jobs
from protocols.clock import ManualClock
from tests.cloud.conftest import api_client, make_settings, metric, wait_until
from tests.cloud.loyalty.conftest import new_member

from .test_distribution import PROGRAM

DAY_S = 86_400


def sale_with_commissions(sessions: sessionmaker[Session], clock: ManualClock,
                          sale_id: str = "sale-1") -> tuple[str, str]:
    """A sale shared by b (recruited by a): a 10 % and a 2 % commission, pending."""
    a = new_member(sessions, clock, is_distributor=True)
    b = new_member(sessions, clock, is_distributor=True, recruited_by=a)
    with sessions.begin() as s:
        made = distribution.record_sale(s, sale_id=sale_id, shared_by=b, buyer_id=None,
                                        paid=10_000, now_ms=clock.now_ms(), program=PROGRAM)
        assert [c.points for c in made] == [1_000, 200]
    return a, b


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released together; returns their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as err:  # asserted below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    return results


def assert_settled_once(sessions: sessionmaker[Session], a: str, b: str) -> None:
    with sessions() as s:
        assert {c.status for c in s.scalars(select(Commission))} == {"settled"}
        assert (points.balance(s, b), points.balance(s, a)) == (1_000, 200)
        credits = s.scalar(select(func.count()).select_from(PointsEntry).where(
            PointsEntry.kind == "commission"))
        assert credits == 2  # one ledger row per commission, not one per scheduler


def test_two_schedulers_at_once_settle_exactly_once(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    a, b = sale_with_commissions(sessions, clock)
    clock.advance(PROGRAM.return_window_days * DAY_S)
    registry = CollectorRegistry()
    shared = JobMetrics(registry)
    replicas = [JobScheduler(retail_jobs(PROGRAM), sessions=sessions, clock=clock,
                             interval_s=60, metrics=shared, holder=f"replica-{i}")
                for i in range(2)]
    results = race(*(r.run_once for r in replicas))
    settled = [res["settle_commissions"] for res in results]
    # The lease lets one replica run the job; the other skips it.
    assert sorted(settled, key=lambda n: -1 if n is None else n) == [None, 2]
    assert_settled_once(sessions, a, b)
    # Running again (same interval: lease held) or later (nothing due) changes nothing.
    assert all(r.run_once()["settle_commissions"] in (None, 0) for r in replicas)
    clock.advance(60)
    assert replicas[0].run_once()["settle_commissions"] == 0
    assert_settled_once(sessions, a, b)
    with sessions() as s:
        lease = s.get(JobLease, "settle_commissions")
        assert lease is not None and lease.last_rows == 0
    runs = {result: metric(registry, "storefleet_jobs_runs_total", job="settle_commissions",
                           result=result) for result in ("ok", "skipped")}
    assert runs == {"ok": 2, "skipped": 3}


@pytest.mark.parametrize("replicas", [2, 6])
def test_without_the_lease_the_job_itself_settles_once(
    sessions: sessionmaker[Session], clock: ManualClock, replicas: int
) -> None:
    """A lease can lapse mid-run (a slow database): the settlement must hold on its own."""
    a, b = sale_with_commissions(sessions, clock)
    clock.advance(PROGRAM.return_window_days * DAY_S)
    schedulers = [JobScheduler(retail_jobs(PROGRAM)[:1], sessions=sessions, clock=clock,
                               interval_s=60, holder=f"r{i}", use_lease=False)
                  for i in range(replicas)]
    results = race(*(s.run_once for s in schedulers))
    assert sum(r["settle_commissions"] for r in results) == 2
    assert_settled_once(sessions, a, b)


def test_points_and_coupons_expire_once(sessions: sessionmaker[Session],
                                        clock: ManualClock) -> None:
    m = new_member(sessions, clock)
    with sessions.begin() as s:
        points.credit(s, m, 500, op_id="earn:x", now_ms=clock.now_ms(), ttl_ms=DAY_S * 1000)
        create_campaign(s, name="five off", trigger="manual",
                        benefit=CouponBenefit(amount_off=500), now_ms=clock.now_ms(),
                        campaign_id="five", validity_days=1)
        lapsed, _ = issue_coupon(s, "five", m, source_key="k1", now_ms=clock.now_ms())
        used, _ = issue_coupon(s, "five", m, source_key="k2", now_ms=clock.now_ms())
        redeem_coupon(s, used.code, now_ms=clock.now_ms())
    clock.advance(2 * DAY_S)
    registry = CollectorRegistry()
    schedulers = [JobScheduler(retail_jobs(PROGRAM), sessions=sessions, clock=clock,
                               interval_s=60, holder=f"r{i}", use_lease=False,
                               registry=registry if i == 0 else None) for i in range(3)]
    results = race(*(s.run_once for s in schedulers))
    assert sum(r["expire_points"] for r in results) == 500
    assert sum(r["expire_coupons"] for r in results) == 1
    with sessions() as s:
        assert points.balance(s, m) == 0
        marked = {c.code: c.expired_ms for c in s.scalars(select(Coupon))}
        assert marked == {lapsed.code: clock.now_ms(), used.code: None}


def test_a_failing_job_is_counted_and_the_others_still_run(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    def broken(_s: Session, _now: int) -> int:
        raise RuntimeError("bug")

    registry = CollectorRegistry()
    scheduler = JobScheduler((Job("broken", broken), *retail_jobs(PROGRAM)), sessions=sessions,
                             clock=clock, interval_s=60, registry=registry, holder="r")
    out = scheduler.run_once()
    assert out["broken"] is None and out["settle_commissions"] == 0
    assert metric(registry, "storefleet_jobs_runs_total", job="broken", result="error") == 1


async def test_the_api_lifespan_runs_the_scheduler_on_two_replicas(db_url: str) -> None:
    """Two API processes with the loop on: the commission settles once; interval 0 = off."""
    clock = ManualClock()
    regs = [CollectorRegistry() for _ in range(3)]
    apps = [create_app(make_settings(db_url, scheduler_interval_s=0.05), registry=regs[i],
                       publisher=MemoryPublisher(), clock=clock, loyalty=PROGRAM)
            for i in range(2)]
    off = create_app(make_settings(db_url), registry=regs[2], publisher=MemoryPublisher(),
                     clock=clock, loyalty=PROGRAM)
    async with api_client(apps[0]), api_client(apps[1]), api_client(off):
        sessions = apps[0].state.cloud.writer
        a, b = sale_with_commissions(sessions, clock)
        clock.advance(PROGRAM.return_window_days * DAY_S)

        def settled() -> float:
            return sum(metric(r, "storefleet_jobs_rows_total", job="settle_commissions")
                       for r in regs)

        await wait_until(lambda: settled() == 2)
        # Both replicas keep ticking; give them several more intervals.
        clock.advance(1)
        await wait_until(lambda: all(metric(r, "storefleet_jobs_runs_total",
                                            job="settle_commissions", result="ok")
                                     + metric(r, "storefleet_jobs_runs_total",
                                              job="settle_commissions", result="skipped")
                                     >= 3 for r in regs[:2]))
        assert settled() == 2
        assert_settled_once(sessions, a, b)
        assert not hasattr(off.state, "scheduler")
        assert metric(regs[2], "storefleet_jobs_runs_total", job="settle_commissions",
                      result="ok") == 0
