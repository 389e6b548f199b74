"""Members at the store (decision 0064): spends authorised for boxes, member snapshots
published to stores, the member app's day keys.

    POST /members/{member_id}/authorise      a box (device token of that store): spend
                                             points or stored value now, idempotent by
                                             (store, spend_id); 409 insufficient_balance
    PUT  /members/{member_id}/home-store     bind a member to a store (its box keeps
                                             them in its snapshot)
    GET  /members/{member_id}/code-keys      today's and tomorrow's day keys, for the
                                             member's app to show member codes (hq-admin:
                                             the app's backend)
    POST /member-snapshots/publish           the selected stores' (stores, regions,
                                             groups; none: every store) next content
                                             manifests carry their member snapshot

Why HTTP for the authorisation and not an MQTT request/response: it is a question that
needs one answer within a till's patience (``timeout``), from the one cloud that owns
the ledger; HTTP gives the status, the problem reason and a timeout per request with no
correlation layer, and the box already speaks it to the cloud with its device token
(content assets). The offline path is the outbox, already at-least-once (decision 0028).

Offline spends arrive as ``member_spend`` events; ``cloud.loyalty.spends.SpendHook``
settles each once.
``SnapshotRefresher`` republishes every store's snapshot every
``member_snapshot_interval_s`` (with today's and tomorrow's keys, a day apart at most).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import AdminRole, AppState, PrincipalDep, StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.routes.content import ContentDep, ContentState, publish_manifests
from cloud.api.routes.retail_common import (
    HqRole,
    MemberId,
    RetailDep,
    TillRole,
    reads,
    require_store,
    writes,
)
from cloud.api.routes.store_targeting import StoreSelection
from cloud.content.service import Built, Change, ContentError, compose
from cloud.db.models import Store
from cloud.db.models_members import MemberHomeStore
from cloud.loyalty import spends
from cloud.loyalty.errors import NotConfigured
from cloud.loyalty.members import get_member
from cloud.loyalty.program import LoyaltyProgram
from cloud.loyalty.store_snapshot import SnapshotConfig, build, day_keys
from cloud.rollouts.errors import RolloutError
from cloud.rollouts.targeting import MAX_STORES, stores_of
from protocols import membercode
from protocols.ids import Id
from protocols.member_snapshot import DOCUMENT, as_document
from protocols.member_spend import SpendRequest

logger = logging.getLogger(__name__)

router = APIRouter(tags=["members at the store"], route_class=JsonRoute)


class SnapshotMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "storefleet_member_snapshots", "Store member snapshots, by result (published, "
            "failed: the publish or the broker refused; the next refresh tries again)",
            ["result"], registry=registry)


@dataclass
class MemberStoreState:
    secret: SecretStr | None
    spend_metrics: spends.SpendMetrics
    snapshot_metrics: SnapshotMetrics
    config: SnapshotConfig = field(default_factory=SnapshotConfig)

    def key(self) -> bytes:
        if self.secret is None:
            raise NotConfigured("member_code_secret (STOREFLEET_MEMBER_CODE_SECRET)")
        return self.secret.get_secret_value().encode()


def get_member_store(request: Request) -> MemberStoreState:
    state: MemberStoreState = request.app.state.member_store
    return state


MemberStoreDep = Annotated[MemberStoreState, Depends(get_member_store)]


class SpendPublic(BaseModel):
    spend_id: str
    member_id: str
    unit: str
    amount: int
    taken: int
    shortfall: int
    status: str = Field(description="authorised | settled | short")
    balance: int = Field(description="the member's balance in unit after it, less what "
                         "they owe")
    replayed: bool


class HomeStore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_id: Id


class HomeStorePublic(BaseModel):
    member_id: str
    store_id: str
    since_ms: int


class CodeKeys(BaseModel):
    member_id: str
    step_ms: int = Field(description="a code's time step (protocols.membercode)")
    keys: dict[str, str] = Field(description="UTC day number -> base64url day key")


class SnapshotsPublished(BaseModel):
    manifests: dict[str, int] = Field(description="store -> the content manifest version "
                                      "that carries its member snapshot")
    members: dict[str, int] = Field(description="store -> members in its snapshot")
    failed: list[str] = Field(description="stores whose manifest the broker did not take")


@router.post("/members/{member_id}/authorise", summary="Authorise a member's points or "
             "stored-value spend at a store now (idempotent by store and spend_id)",
             responses={404: {"description": "no such member"},
                        409: {"description": "insufficient_balance, or the spend_id was "
                              "another spend"}, 403: {"description": "another store's token"}})
def authorise(member_id: MemberId, body: SpendRequest, state: StateDep,
              principal: PrincipalDep, members: MemberStoreDep, _: TillRole) -> SpendPublic:
    spend = spends.Spend(spend_id=body.spend_id, member_id=member_id, unit=body.unit,
                         amount=body.amount, spent_ms=body.spent_ms)

    def work(s: Session) -> SpendPublic:
        principal.check_store(s, body.store_id)
        result = spends.authorise(s, store_id=body.store_id, spend=spend,
                                  now_ms=state.clock.now_ms(), metrics=members.spend_metrics)
        return SpendPublic(**{k: getattr(result, k) for k in SpendPublic.model_fields})

    return writes(state, work)


@router.put("/members/{member_id}/home-store", summary="Bind a member to a home store",
            responses={404: {"description": "no such member or store"}})
def put_home_store(member_id: MemberId, body: HomeStore, state: StateDep,
                   principal: PrincipalDep, _: TillRole) -> HomeStorePublic:
    def work(s: Session) -> HomeStorePublic:
        principal.check_store(s, body.store_id)
        require_store(s, body.store_id)
        get_member(s, member_id, for_update=True)
        row = s.get(MemberHomeStore, member_id)
        if row is None:
            row = MemberHomeStore(member_id=member_id, store_id=body.store_id,
                                  since_ms=state.clock.now_ms())
            s.add(row)
        elif row.store_id != body.store_id:
            row.store_id, row.since_ms = body.store_id, state.clock.now_ms()
        s.flush()
        return HomeStorePublic(member_id=member_id, store_id=row.store_id,
                               since_ms=row.since_ms)

    return writes(state, work)


@router.get("/members/{member_id}/code-keys", summary="The member's day keys for today "
            "and tomorrow (UTC), for the member's app to show member codes",
            responses={404: {"description": "no such member"},
                       503: {"description": "no member_code_secret configured"}})
def code_keys(member_id: MemberId, state: StateDep, members: MemberStoreDep,
              _: HqRole) -> CodeKeys:
    def work(s: Session) -> CodeKeys:
        get_member(s, member_id)
        return CodeKeys(member_id=member_id, step_ms=membercode.STEP_MS,
                        keys=day_keys(members.key(), member_id, now_ms=state.clock.now_ms()))

    return reads(state, work)


def snapshot_changes(session: Session, stores: Sequence[str], *, secret: bytes,
                     now_ms: int, program: LoyaltyProgram,
                     config: SnapshotConfig) -> tuple[dict[str, Change], dict[str, int]]:
    """Each store's manifest change (its ``members`` document) and its member count."""
    changes, counts = {}, {}
    for store in stores:
        doc = build(session, store, secret=secret, now_ms=now_ms, program=program,
                    config=config)
        changes[store] = Change(documents={DOCUMENT: as_document(doc)})
        counts[store] = len(doc.members)
    return changes, counts


async def publish_snapshots(app: AppState, content: ContentState, members: MemberStoreState,
                            program: LoyaltyProgram, *, selection: StoreSelection
                            ) -> tuple[list[Built], list[str], dict[str, int]]:
    """Build and announce the selected stores' snapshots (at most ``MAX_STORES``)."""
    secret = members.key()

    def make(session: Session) -> tuple[list[Built], dict[str, int]]:
        known = set(session.scalars(select(Store.store_id)))
        stores = sorted(known) if selection.everything else stores_of(
            session, stores=selection.stores, regions=selection.regions,
            groups=selection.groups)
        if unknown := [s for s in stores if s not in known]:
            raise ContentError(422, f"{len(unknown)} unknown store(s), e.g. {unknown[0]}",
                               reason="unknown_store")
        if not stores:
            raise ContentError(422, "no store is known yet", reason="empty_selection")
        if len(stores) > MAX_STORES:
            raise ContentError(422, f"{len(stores)} stores, at most {MAX_STORES} per "
                               "publish", reason="too_many_stores")
        now = app.clock.now_ms()
        changes, counts = snapshot_changes(session, stores, secret=secret, now_ms=now,
                                           program=program, config=members.config)
        return compose(session, changes, signer=content.signer, now_ms=now), counts

    built, failed, counts = await publish_manifests(app, content, make)
    members.snapshot_metrics.published.labels(result="published").inc(len(built) - len(failed))
    members.snapshot_metrics.published.labels(result="failed").inc(len(failed))
    return built, failed, counts


@router.post("/member-snapshots/publish", status_code=201, summary="Publish each "
             "selected store's offline member snapshot in its next content manifest",
             responses={409: {"description": "a concurrent publish to the same stores"},
                        413: {"description": "a store's documents would be too large"},
                        422: {"description": "an unknown store or none at all"},
                        503: {"description": "no member_code_secret configured"}})
async def publish(body: StoreSelection, app: StateDep, content: ContentDep,
                  members: MemberStoreDep, retail: RetailDep,
                  _: AdminRole) -> SnapshotsPublished:
    try:
        built, failed, counts = await publish_snapshots(app, content, members,
                                                        retail.program, selection=body)
    except NotConfigured as err:
        raise ApiProblem(503, str(err), reason="not_configured") from err
    except (ContentError, RolloutError) as err:
        members.snapshot_metrics.published.labels(result="failed").inc()
        raise ApiProblem(err.status, err.detail, reason=err.reason) from err
    logger.info("member snapshots published to %d store(s) (%d failed)", len(built),
                len(failed))
    return SnapshotsPublished(manifests={b.store_id: b.version for b in built},
                              members=counts, failed=failed)


class SnapshotRefresher:
    """Every ``interval_s``: every known store's snapshot, ``MAX_STORES`` at a time."""

    def __init__(self, app: AppState, content: ContentState, members: MemberStoreState,
                 program: LoyaltyProgram, *, interval_s: float) -> None:
        self.app, self.content, self.members = app, content, members
        self.program, self.interval_s = program, interval_s

    async def run_once(self) -> int:
        def known() -> list[str]:
            with self.app.reader() as session:
                return list(session.scalars(select(Store.store_id).order_by(Store.store_id)))

        stores = await asyncio.to_thread(known)  # blocking database read, off the loop
        done = 0
        for i in range(0, len(stores), MAX_STORES):
            part = StoreSelection(stores=stores[i:i + MAX_STORES])
            try:
                built, _failed, _counts = await publish_snapshots(
                    self.app, self.content, self.members, self.program, selection=part)
            except (ContentError, RolloutError) as err:
                self.members.snapshot_metrics.published.labels(result="failed").inc()
                logger.error("member snapshots for %d store(s) not published: %s",
                             len(part.stores), err)
                continue
            done += len(built)
        return done

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.run_once()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
            except TimeoutError:
                pass
