"""Composition root of the cloud API: ``create_app(settings)``.

    app = create_app(CloudSettings.from_env())                      # production
    app = create_app(settings, publisher=MemoryPublisher())          # tests
    app = create_app(settings, registry=reg, ingest=True)            # API + ingest in one loop

The lifespan migrates the database (``alembic upgrade head``), and when ``ingest``
is on runs an ``IngestWorker`` as a named task in the same event loop, stopping and
awaiting it on shutdown. When ``settings.scheduler_interval_s`` > 0 it also runs the
retail jobs loop (``cloud.scheduler``: commission settlement, points and coupon
expiry), safe with any number of replicas. Both run supervised (``cloud.supervise``): a
crash is logged, counted and restarted with backoff, and ``/healthz`` shows each task's
state, answering 503 while one is down (decision 0031).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import CollectorRegistry

from cloud.api.deps import AppState, enforce_path_scope
from cloud.api.docs import install_docs
from cloud.api.problems import install_problem_handlers
from cloud.api.routes import (
    artifacts,
    audio,
    commands,
    content,
    coupons,
    devices,
    enrolment,
    events,
    health,
    members,
    pricebooks,
    promotions,
    rollouts,
    screens,
    shadows,
    staff,
    staff_views,
    store_members,
    store_targeting,
    stores,
)
from cloud.api.routes import cabinets as cabinet_routes
from cloud.api.routes import orders as orders_routes
from cloud.api.routes.retail_common import RetailState
from cloud.artifacts.service import ArtifactMetrics, ArtifactService, release_signer
from cloud.artifacts.storage import artifact_storage
from cloud.content.service import ContentHook, ContentMetrics
from cloud.db.engine import make_engine, make_session_factory, writer
from cloud.db.migrate import upgrade
from cloud.enrolment.metrics import EnrolmentMetrics
from cloud.fleet_metrics import FleetCollector
from cloud.ingest.hooks import PostCommitHooks
from cloud.ingest.worker import IngestWorker
from cloud.loyalty.ingest import LoyaltyHook
from cloud.loyalty.metrics import LoyaltyMetrics
from cloud.loyalty.program import LoyaltyProgram
from cloud.loyalty.spends import SpendHook, SpendMetrics
from cloud.loyalty.vends import VendLoyaltyHook
from cloud.metrics import ApiMetrics
from cloud.orders import OrderMetrics
from cloud.orders import hooks as order_hooks
from cloud.orders.cabinet_status import PickupStatusHook
from cloud.orders.cabinets import CabinetMetrics
from cloud.promotions.metrics import PromotionMetrics
from cloud.promotions.reprice import RepriceHook
from cloud.promotions.signing import SnapshotSigner
from cloud.publish import MqttPublisher, Publisher
from cloud.rollouts.service import RolloutHook, RolloutMetrics, RolloutOfferer
from cloud.scheduler import JobMetrics, JobScheduler, retail_jobs
from cloud.settings import CloudSettings
from cloud.staff import StaffMetrics
from cloud.staff.sales import SalesHook
from cloud.supervise import TaskSupervisor
from protocols.backoff import Backoff
from protocols.clock import Clock, SystemClock
from protocols.ids import uuid7

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

_AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "missing or unknown bearer token"},
    403: {"description": "the token's role may not do this, or the store (path, query, body, "
                         "or the store of the order/command addressed) is outside the "
                         "token's store scope (reason `forbidden_store`)"},
}


def create_app(
    settings: CloudSettings,
    *,
    registry: CollectorRegistry | None = None,
    publisher: Publisher | None = None,
    clock: Clock | None = None,
    ingest: bool = False,
    migrate: bool = True,
    loyalty: LoyaltyProgram | None = None,
    signer: SnapshotSigner | None = None,
    release: SnapshotSigner | None = None,
    task_backoff: Callable[[], Backoff] | None = None,
) -> FastAPI:
    registry = registry if registry is not None else CollectorRegistry()
    retail = make_retail(settings, registry, program=loyalty, signer=signer)
    engine = make_engine(settings.database_url)
    own_publisher = publisher is None
    state = AppState(
        settings=settings,
        engine=engine,
        reader=make_session_factory(engine),
        writer=make_session_factory(writer(engine)),
        publisher=publisher if publisher is not None else MqttPublisher(settings),
        clock=clock or SystemClock(),
        registry=registry,
        metrics=ApiMetrics(registry),
    )
    # HQ's fleet gauges, computed from the database on scrape (decision 0054)
    registry.register(FleetCollector(sessions=state.reader, clock=state.clock,
                                     registry=registry))
    order_metrics = OrderMetrics(registry)
    job_metrics = JobMetrics(registry)
    rollout_metrics = RolloutMetrics(registry)
    content_metrics = ContentMetrics(registry)
    spend_metrics = SpendMetrics(registry)
    staff_metrics = StaffMetrics(registry)
    cabinet_metrics = CabinetMetrics(registry)
    offerer = RolloutOfferer(sessions=state.writer, reader=state.reader,
                             publisher=state.publisher, clock=state.clock, metrics=rollout_metrics,
                             interval_s=settings.rollout_interval_s)
    # A crashed background task is started again after 1 s, then up to a minute apart.
    tasks = TaskSupervisor(registry, backoff=task_backoff or (lambda: Backoff(min_s=1.0,
                                                                               max_s=60.0)))
    for prefix in settings.unscoped_store_tokens():
        logger.warning("API token %s is a store-manager/device token without a store scope: "
                       "it acts for every store (give it '@<store>'; decision 0015)", prefix)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await asyncio.to_thread(upgrade, engine)  # blocking DDL, off the loop
        stop = asyncio.Event()
        task: asyncio.Task[None] | None = None
        jobs_task: asyncio.Task[None] | None = None
        if settings.scheduler_interval_s > 0:
            scheduler = JobScheduler(
                retail_jobs(retail.program), sessions=state.writer, clock=state.clock,
                interval_s=settings.scheduler_interval_s, metrics=job_metrics,
                holder=f"{socket.gethostname()}:{os.getpid()}:{uuid7(state.clock.now_ms())[-8:]}")
            app.state.scheduler = scheduler
            jobs_task = tasks.start("scheduler", lambda: scheduler.run(stop), stop=stop)
        offers_task: asyncio.Task[None] | None = None
        if settings.rollout_interval_s > 0:  # offers and deadlines (decision 0040)
            offers_task = tasks.start("rollouts", lambda: offerer.run(stop), stop=stop)
        if ingest:
            worker = IngestWorker(settings, registry=registry, clock=state.clock,
                                  engine=engine, migrate=False,
                                  hooks=ingest_hooks(registry, retail=retail,
                                                     orders=order_metrics,
                                                     rollouts=rollout_metrics,
                                                     content=content_metrics,
                                                     spends=spend_metrics, staff=staff_metrics,
                                                     cabinets=cabinet_metrics))
            app.state.ingest = worker
            task = tasks.start("ingest", lambda: worker.run(stop), stop=stop)
        snapshots_task: asyncio.Task[None] | None = None
        if settings.member_snapshot_interval_s > 0 and settings.member_code_secret:
            refresher = store_members.SnapshotRefresher(  # decision 0064
                state, app.state.content, app.state.member_store, retail.program,
                interval_s=settings.member_snapshot_interval_s)
            snapshots_task = tasks.start("member-snapshots", lambda: refresher.run(stop),
                                         stop=stop)
        try:
            yield
        finally:
            stop.set()
            for running in (task, jobs_task, offers_task, snapshots_task):
                if running is not None:
                    await running
            if own_publisher and isinstance(state.publisher, MqttPublisher):
                await state.publisher.aclose()
            engine.dispose()

    app = FastAPI(
        title="storefleet cloud",
        version="1",
        summary="Stores, devices, events, shadows and commands of a storefleet fleet.",
        lifespan=lifespan,
        docs_url=None,  # /docs is served with packaged Swagger UI assets (install_docs)
        redoc_url=None,
    )
    app.state.cloud = state
    app.state.tasks = tasks  # /healthz reads their states
    app.state.retail = retail
    app.state.api_metrics = state.metrics
    app.state.staff = staff.StaffState(metrics=staff_metrics,  # decision 0065
                                       secret=settings.member_code_secret)
    app.state.orders = orders_routes.OrdersState(metrics=order_metrics)
    app.state.cabinets = cabinet_routes.CabinetState(metrics=cabinet_metrics,
                                                     signer=retail.signer)
    app.state.rollouts = rollouts.RolloutState(offerer=offerer)
    app.state.content = content.ContentState(signer=retail.signer, metrics=content_metrics)
    app.state.member_store = store_members.MemberStoreState(
        secret=settings.member_code_secret, spend_metrics=spend_metrics,
        snapshot_metrics=store_members.SnapshotMetrics(registry))
    app.state.artifacts = artifacts.ArtifactState(service=ArtifactService(
        storage=artifact_storage(settings, registry=registry),
        signer=release or release_signer(settings), writer=state.writer, clock=state.clock,
        max_bytes=settings.max_artifact_bytes, metrics=ArtifactMetrics(registry)))
    install_problem_handlers(app)
    app.middleware("http")(_count_requests(state.metrics))

    # Every route with a store id in its path or query checks the token's store scope.
    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(enforce_path_scope)],
                    responses=_AUTH_RESPONSES)
    for module in (stores, devices, events, shadows, commands, members, coupons, promotions,
                   pricebooks, artifacts, rollouts, store_targeting, content, audio, screens,
                   store_members, staff, staff_views):
        api.include_router(module.router)
    api.include_router(orders_routes.router)
    # The payment gateway's notices carry an HMAC, not an API token (decision 0067).
    app.include_router(orders_routes.public_router, prefix=API_PREFIX)
    api.include_router(cabinet_routes.router)
    if settings.enrolment.ca_dir:
        # Store identities only where the cloud holds a CA (decision 0035); the box
        # enrols with its one-time token, not an API token.
        api.include_router(enrolment.router)
        app.include_router(enrolment.public_router, prefix=API_PREFIX)
        app.state.enrolment_metrics = EnrolmentMetrics(registry)
    app.include_router(api)
    app.include_router(health.router)
    staff.install_page(app)  # the assistants' page at /staff/ (decision 0065)
    install_docs(app)
    return app


def make_retail(
    settings: CloudSettings,
    registry: CollectorRegistry,
    *,
    program: LoyaltyProgram | None = None,
    signer: SnapshotSigner | None = None,
) -> RetailState:
    """Loyalty and promotions state shared by their routes and ingest hooks."""
    return RetailState(
        program=program or LoyaltyProgram(),
        signer=signer or SnapshotSigner.from_settings(settings),
        loyalty_metrics=LoyaltyMetrics(registry),
        promotion_metrics=PromotionMetrics(registry),
    )


def ingest_hooks(registry: CollectorRegistry, *, retail: RetailState,
                 orders: OrderMetrics | None = None,
                 rollouts: RolloutMetrics | None = None,
                 content: ContentMetrics | None = None,
                 spends: SpendMetrics | None = None,
                 staff: StaffMetrics | None = None,
                 cabinets: CabinetMetrics | None = None) -> PostCommitHooks:
    """What stored events trigger: loyalty (points, coupons, commissions) and re-pricing."""
    hooks = PostCommitHooks(registry=registry)
    loyalty = LoyaltyHook(program=retail.program, metrics=retail.loyalty_metrics)
    hooks.register("loyalty", {"sale", "refund"}, loyalty)
    hooks.register("reprice", {"sale"},
                   RepriceHook(metrics=retail.promotion_metrics, repricer=retail.repricer))
    # Orders: order_status state machine (a handed-over order earns through ``loyalty``);
    # offline coupon-range reconciliation; stock kept true by sales (decision 0067).
    order_hooks.register(hooks, metrics=orders or OrderMetrics(registry), loyalty=loyalty)
    # Rollouts: a box's install report advances, halts or completes its rollout.
    hooks.register("rollouts", {"rollout_status"},
                   RolloutHook(rollouts or RolloutMetrics(registry)))
    # Content (decision 0046): each store's newest report of the manifest it applied.
    hooks.register("content", {"content_status"},
                   ContentHook(content or ContentMetrics(registry)))
    # Members at the store (decision 0064): offline spends settled once each; spends
    # whose sale was not recorded given back once (decision 0068).
    hooks.register("member_spends", {"member_spend", "member_spend_release"},
                   SpendHook(spends or SpendMetrics(registry),
                             points_ttl_ms=retail.program.points_ttl_ms))
    # Staff assistant (decision 0065): each sale indexed in store_sales, once.
    hooks.register("staff_sales", {"sale"}, SalesHook(staff or StaffMetrics(registry)))
    # Cabinet pickup and member vends (decision 0066): a pickup's status from its box;
    # a member's vend earns as a sale does (the loyalty hook's path).
    hooks.register("cabinet_pickups", {"cabinet_pickup", "vend"},
                   PickupStatusHook(metrics=cabinets or CabinetMetrics(registry)))
    hooks.register("loyalty_vends", {"vend"},
                   VendLoyaltyHook(LoyaltyHook(program=retail.program,
                                               metrics=retail.loyalty_metrics)))
    return hooks


def _count_requests(
    metrics: ApiMetrics,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        # The route template, not the raw path: label values must stay few.
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(method=request.method, route=path,
                                status=str(response.status_code)).inc()
        return response

    return middleware
