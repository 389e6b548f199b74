"""The retail jobs loop: settle commissions, expire points, expire coupons, cancel
online orders left unpaid.

    scheduler = JobScheduler(retail_jobs(program), sessions=writer_sessions, clock=clock,
                             interval_s=300, registry=registry, holder="api-7f3a")
    task = asyncio.create_task(scheduler.run(stop), name="cloud-scheduler")

Started by the API's lifespan (``cloud.main``) when ``scheduler_interval_s`` > 0. Every
cloud replica may run one; they are safe together twice over:

1. **Lease**: before a job runs, ``job_leases`` is claimed with
   ``UPDATE ... SET holder, until_ms WHERE name = :job AND until_ms <= :now`` -- the
   database lets exactly one of racing replicas change the row, so a job normally runs
   once per interval across the fleet, not once per replica.
2. **The jobs themselves are idempotent** (a lease can lapse in the middle of a slow run):
   settlement locks due rows ``FOR UPDATE SKIP LOCKED`` and credits each with op id
   ``commission:<id>``; point expiry uses one op id per lot (``expire:<lot>``); coupon
   expiry is one conditional ``UPDATE ... WHERE expired_ms IS NULL``.

Each job runs in its own writer transaction (``BEGIN IMMEDIATE`` on SQLite), off the
event loop. Metrics: ``storefleet_jobs_runs_total{job,result}`` (ok, skipped: another
replica holds the lease, error), ``storefleet_jobs_rows_total{job}`` (rows changed),
``storefleet_jobs_last_success_timestamp_seconds{job}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models_loyalty import JobLease
from cloud.loyalty import distribution, points
from cloud.loyalty.coupons import expire_coupons
from cloud.loyalty.program import LoyaltyProgram
from cloud.orders.cabinet_status import expire_overdue
from cloud.orders.payments import expire_unpaid
from protocols.clock import Clock

logger = logging.getLogger(__name__)

JobFn = Callable[[Session, int], int]
"""(writer session, now ms) -> rows changed."""


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    run: JobFn


def retail_jobs(program: LoyaltyProgram) -> tuple[Job, ...]:
    """The loyalty jobs, in the order they run (settle before expiring: a commission
    settled today should not be counted towards points expiring today)."""
    return (
        Job("settle_commissions", lambda s, now: distribution.settle_commissions(
            s, now_ms=now, program=program)),
        Job("expire_points", lambda s, now: points.expire_due(s, now_ms=now)),
        Job("expire_coupons", lambda s, now: expire_coupons(s, now_ms=now)),
        # Online orders left unpaid give their stock back (decision 0067).
        Job("expire_unpaid_orders", lambda s, now: expire_unpaid(s, now_ms=now)),
        # Cabinet pickups no box reported on free their doors (decision 0066).
        Job("expire_cabinet_pickups", lambda s, now: expire_overdue(s, now_ms=now)),
    )


class JobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter("storefleet_jobs_runs", "Scheduled job runs, by job and result "
                            "(ok, skipped: another replica holds the lease, error)",
                            ["job", "result"], registry=registry)
        self.rows = Counter("storefleet_jobs_rows", "Rows a scheduled job changed "
                            "(commissions settled, lots expired, coupons expired)",
                            ["job"], registry=registry)
        self.last_success = Gauge("storefleet_jobs_last_success_timestamp_seconds",
                                  "When a job last ran to completion (Unix time)", ["job"],
                                  registry=registry)


class JobScheduler:
    def __init__(
        self,
        jobs: Sequence[Job],
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        interval_s: float,
        registry: CollectorRegistry | None = None,
        metrics: JobMetrics | None = None,
        holder: str,
        use_lease: bool = True,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive (0 means: do not build one)")
        self.jobs = tuple(jobs)
        self.sessions = sessions
        self.clock = clock
        self.interval_s = interval_s
        self.holder = holder
        self.use_lease = use_lease
        self.metrics = metrics or JobMetrics(registry or CollectorRegistry())
        # A lease a little shorter than the interval, so the replica that ran a job can
        # claim it again on its next tick while a replica ticking in between cannot.
        self.lease_ms = max(1, int(interval_s * 1000 * 0.9))

    async def run(self, stop: asyncio.Event) -> None:
        """Run every job each ``interval_s`` until ``stop`` is set (first run after one
        interval, so that N replicas starting together do not all start with a run)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await stop.wait()
            if stop.is_set():
                break
            # Blocking database work: off the event loop.
            await asyncio.to_thread(self.run_once)

    def run_once(self) -> dict[str, int | None]:
        """Run each due job once; returns job -> rows changed (None: skipped or failed).

        A failing job is logged and counted and does not stop the others or the loop.
        """
        out: dict[str, int | None] = {}
        for job in self.jobs:
            out[job.name] = None
            try:
                now = self.clock.now_ms()
                if self.use_lease and not self._claim(job.name, now):
                    self.metrics.runs.labels(job=job.name, result="skipped").inc()
                    continue
                with self.sessions.begin() as session:
                    rows = job.run(session, now)
                    if self.use_lease:
                        session.execute(update(JobLease).where(JobLease.name == job.name)
                                        .values(last_run_ms=now, last_rows=rows))
            except SQLAlchemyError as err:
                self.metrics.runs.labels(job=job.name, result="error").inc()
                logger.error("job %s failed (retried next interval): %s", job.name, err)
                continue
            except Exception:
                # A bug in one job must not kill the loop; counted, logged with traceback.
                self.metrics.runs.labels(job=job.name, result="error").inc()
                logger.exception("job %s failed (retried next interval)", job.name)
                continue
            out[job.name] = rows
            self.metrics.runs.labels(job=job.name, result="ok").inc()
            self.metrics.rows.labels(job=job.name).inc(rows)
            self.metrics.last_success.labels(job=job.name).set(now / 1000)
            if rows:
                logger.info("job %s: %d rows", job.name, rows)
        return out

    def _claim(self, name: str, now_ms: int) -> bool:
        """Take the lease of ``name`` if it is free or lapsed; exactly one racer wins."""
        with self.sessions.begin() as session:
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            session.execute(insert(JobLease).values(name=name, holder=None, until_ms=0)
                            .on_conflict_do_nothing(index_elements=["name"]))
            claimed = session.execute(
                update(JobLease)
                .where(JobLease.name == name, JobLease.until_ms <= now_ms)
                .values(holder=self.holder, until_ms=now_ms + self.lease_ms)
                .execution_options(synchronize_session=False))
            return bool(claimed.rowcount)  # type: ignore[attr-defined]
