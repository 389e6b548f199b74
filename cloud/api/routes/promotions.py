"""Promotions: HQ defines, scopes and publishes; stores download signed snapshots.

Also the programme's admin surface: regions, tiers, the sale audit and the Clock-driven
jobs (commission settlement, points expiry) for a scheduler to call.

The sale audit (``cloud.promotions.reprice``) over REST:

- ``GET /promotions/mismatches?store_id=&kind=mismatch|unaudited&reason=&limit=``: the
  findings, newest first, each with its store, source device (the event's ``device_id``),
  kind and reason; a sale may appear twice (a pricing finding and ``charged_differs``).
- ``GET /promotions/audit?store_id=``: ``{"sales", "audited", "mismatched", "unaudited",
  "pending", "charged_differs", "unaudited_reasons": {reason: n}}``. ``audited`` means
  re-priced to the same totals; a demo or dashboard that reports "0 mismatches" should
  report ``unaudited`` and ``pending`` beside it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import PrincipalDep, StateDep, scoped_store_filter
from cloud.api.json_body import JsonRoute
from cloud.api.problems import nothing_published
from cloud.api.routes.retail_common import HqRole, RetailDep, RetailRead, reads, writes
from cloud.api.schemas import BigInt
from cloud.db.models import Store
from cloud.db.models_loyalty import (
    PromotionDef,
    PromotionPublication,
    SalePriceMismatch,
    StoreRegion,
    Tier,
)
from cloud.loyalty import coupons, distribution, points
from cloud.loyalty.sale import CHANNELS, Channel
from cloud.promotions import service
from cloud.promotions.announce import announce
from cloud.promotions.reprice import audit_summary
from protocols.ids import Id
from protocols.problems import NOTHING_PUBLISHED

logger = logging.getLogger(__name__)

router = APIRouter(tags=["promotions"], route_class=JsonRoute)

StoreId = Annotated[Id, Path(description="store id")]
PathId = Annotated[Id, Path()]


class PromotionPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    promotion: dict[str, Any] = Field(
        description="a pricing-engine promotion (kind, id, benefit, conditions: tiers, "
                    "weekdays, time windows, validity)",
        examples=[{"kind": "markdown", "id": "milk-10", "percent_bp": 1000,
                   "scope": {"skus": ["milk"]}}])
    stores: list[Id] = Field(default_factory=list, description="empty with no regions: all")
    regions: list[Id] = Field(default_factory=list)
    channels: list[Channel] = Field(default_factory=lambda: list(CHANNELS))
    trigger_rules: list[dict[str, Any]] = Field(
        default_factory=list, max_length=1_000,
        description="in-aisle coupon triggers (protocols.triggers.TriggerRule) issuing this "
                    "coupon promotion's code; sent to the stores in scope with the signed "
                    "snapshot (replaced whole on every PUT)",
        examples=[[{"id": "dairy-shelf", "shelf": "D-1", "dwell_ms": 3000,
                    "coupon": {"engine_code": "DAIRY10", "title": "10% off dairy"}}]])


class PromotionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    promotion_id: str
    definition: dict[str, Any]
    stores: list[str]
    regions: list[str]
    channels: list[str]
    archived: bool
    updated_ms: int
    trigger_rules: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def of(cls, row: PromotionDef) -> PromotionPublic:
        return cls.model_validate({
            "promotion_id": row.promotion_id, "definition": service.engine_definition(row),
            "stores": row.stores, "regions": row.regions, "channels": row.channels,
            "archived": row.archived, "updated_ms": row.updated_ms,
            "trigger_rules": service.trigger_rules_of(row)})


class PublishResult(BaseModel):
    version: int
    published_ms: int
    promotions: int
    announced: int = Field(description="stores told over MQTT")
    announce_failed: list[str]


class PublicationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    currency: str
    published_ms: int
    entries: list[dict[str, Any]]


class SignedDocument(BaseModel):
    payload: dict[str, Any] = Field(description="kind, store_id, version, snapshots per "
                                    "channel (pricing.PromotionSnapshot), ruleset_hashes, "
                                    "trigger_rules (protocols.triggers.TriggerRuleSet; only "
                                    "once a published promotion carries rules)")
    key_id: str
    signature: str = Field(description="base64 Ed25519 over the payload's canonical JSON")


class PublicKey(BaseModel):
    key_id: str
    public_key: str = Field(description="raw Ed25519 public key, base64")
    current: bool


class TierPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_points: BigInt
    multiplier_bp: Annotated[int, Field(ge=0, le=100_000)] = 10_000
    discount_bp: Annotated[int, Field(ge=0, le=10_000)] = 0
    prices: dict[str, BigInt] = Field(default_factory=dict)


class TierPublic(TierPut):
    model_config = ConfigDict(from_attributes=True, extra="ignore")

    name: str


FindingKind = Literal["mismatch", "unaudited"]


class MismatchPublic(BaseModel):
    """One audit finding on one sale (a sale may have a pricing one and a charged one)."""

    model_config = ConfigDict(from_attributes=True)

    event_id: str
    kind: FindingKind = Field(description="mismatch: re-priced to other totals, or charged "
                              "differs from paid; unaudited: could not be re-priced")
    reason: str = Field(description="mismatch: totals, ruleset_hash, charged_differs; "
                        "unaudited: no_basket, engine_version, unknown_snapshot, "
                        "unpriceable, bad_payload")
    store_id: str
    device_id: str | None = Field(description="the device that sent the sale (the till)")
    snapshot_version: int | None
    expected: dict[str, Any] | None
    reported: dict[str, Any] | None
    detected_ms: int


class AuditSummary(BaseModel):
    sales: int = Field(description="sale events stored")
    audited: int = Field(description="re-priced by the cloud to the same totals")
    mismatched: int = Field(description="re-priced to other totals (or another ruleset)")
    unaudited: int = Field(description="could not be re-priced (see unaudited_reasons)")
    pending: int = Field(description="stored but not audited yet (or the audit failed on "
                         "them: storefleet_ingest_hook_errors_total{hook=\"reprice\"})")
    charged_differs: int = Field(description="money charged by the tenders differs from "
                                 "totals.paid (independent of the pricing outcome)")
    unaudited_reasons: dict[str, int]


class JobResult(BaseModel):
    done: int


@router.put("/promotions/{promotion_id}", summary="Create or replace a promotion",
            responses={422: {"description": "the engine refuses the promotion"}})
def put_promotion(promotion_id: PathId, body: PromotionPut, state: StateDep,
                  _: HqRole) -> PromotionPublic:
    definition = {**body.promotion, "id": promotion_id}
    return writes(state, lambda s: PromotionPublic.of(service.upsert_promotion(
        s, definition, now_ms=state.clock.now_ms(), stores=body.stores,
        regions=body.regions, channels=list(body.channels), trigger_rules=body.trigger_rules)))


@router.delete("/promotions/{promotion_id}", summary="Archive (left out of the next publish)",
               responses={404: {"description": "unknown promotion"}})
def archive(promotion_id: PathId, state: StateDep, _: HqRole) -> PromotionPublic:
    return writes(state, lambda s: PromotionPublic.of(
        service.archive_promotion(s, promotion_id, now_ms=state.clock.now_ms())))


@router.get("/promotions", summary="List promotion definitions")
def list_promotions(state: StateDep, _: RetailRead) -> list[PromotionPublic]:
    return reads(state, lambda s: [PromotionPublic.of(p) for p in s.scalars(
        select(PromotionDef).order_by(PromotionDef.promotion_id))])


@router.post("/promotions/publish", summary="Publish the next immutable, signed version and "
             "announce it to every known store")
async def publish(state: StateDep, retail: RetailDep, _: HqRole) -> PublishResult:
    def work(s: Session) -> tuple[PromotionPublication, list[str]]:
        pub = service.publish(s, now_ms=state.clock.now_ms(), currency=state.settings.currency)
        stores = sorted(set(s.scalars(select(Store.store_id)))
                        | set(s.scalars(select(StoreRegion.store_id))))
        return pub, stores

    # Database work blocks: off the event loop.
    pub, stores = await asyncio.to_thread(writes, state, work)
    retail.promotion_metrics.published.inc()
    failed = await announce(state.publisher, pub, stores, signer=retail.signer)
    return PublishResult(version=pub.version, published_ms=pub.published_ms,
                         promotions=len(pub.entries), announced=len(stores) - len(failed),
                         announce_failed=failed)


@router.get("/promotions/versions/{version}", summary="One published version, as frozen",
            responses={404: {"description": "unknown version"}})
def get_version(version: Annotated[BigInt, Path(ge=1)], state: StateDep,
                _: RetailRead) -> PublicationPublic:
    return reads(state, lambda s: PublicationPublic.model_validate(
        service.get_publication(s, version)))


@router.get("/promotions/keys", summary="Public keys that verify snapshot signatures")
def keys(retail: RetailDep, _: RetailRead) -> list[PublicKey]:
    return [PublicKey(**k) for k in retail.signer.public_keys()]


@router.get("/stores/{store_id}/promotions/snapshot", response_model=SignedDocument,
            summary="The signed promotion snapshot for this store (latest or a version)",
            responses={404: {"description": "unknown version; or, with type "
                             f"{NOTHING_PUBLISHED}, nothing published yet (a normal "
                             "state: the store keeps polling)"}})
def snapshot(store_id: StoreId, state: StateDep, retail: RetailDep, _: RetailRead,
             version: Annotated[BigInt | None, Query(ge=1)] = None) -> Response:
    # The document's JSON as built once per scope and signed (decision 0060): no
    # pydantic pass over its ~1,500 promotions per request.
    def work(s: Session) -> bytes:
        wanted = service.latest_version(s) if version is None else version
        if wanted is None:
            raise nothing_published("promotions", store_id)
        scoped = retail.documents.get(wanted, lambda: service.get_publication(s, wanted))
        return scoped.signed_document(store_id, retail.signer)

    return Response(reads(state, work), media_type="application/json")


@router.put("/regions/{region}/stores/{store_id}", summary="Put a store in a region")
def put_region(region: PathId, store_id: StoreId, state: StateDep, _: HqRole) -> JobResult:
    writes(state, lambda s: service.set_store_region(s, store_id, region))
    return JobResult(done=1)


@router.put("/tiers/{name}", summary="Create or change a tier and its benefits")
def put_tier(name: PathId, body: TierPut, state: StateDep, _: HqRole) -> TierPublic:
    def work(s: Session) -> TierPublic:
        tier = s.get(Tier, name) or Tier(name=name)
        for key, value in body.model_dump().items():
            setattr(tier, key, value)
        s.add(tier)
        s.flush()
        return TierPublic.model_validate(tier)

    return writes(state, work)


@router.get("/tiers", summary="Tiers, lowest first")
def list_tiers(state: StateDep, _: RetailRead) -> list[TierPublic]:
    return reads(state, lambda s: [TierPublic.model_validate(t) for t in s.scalars(
        select(Tier).order_by(Tier.min_points, Tier.name))])


@router.get("/promotions/mismatches", summary="Sale audit findings, newest first: sales "
            "whose totals the cloud could not reproduce, whose charged money differs from "
            "the recorded one (kind=mismatch), and sales it could not re-price "
            "(kind=unaudited)")
def mismatches(state: StateDep, _: RetailRead, who: PrincipalDep,
               store_id: Annotated[Id | None, Query()] = None,
               kind: Annotated[FindingKind | None, Query(description="only this kind")] = None,
               reason: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[MismatchPublic]:
    def work(s: Session) -> list[MismatchPublic]:
        stmt = select(SalePriceMismatch).order_by(
            SalePriceMismatch.detected_ms.desc(), SalePriceMismatch.event_id,
            SalePriceMismatch.reason).limit(limit)
        if (stores := scoped_store_filter(s, who, store_id)) is not None:
            stmt = stmt.where(SalePriceMismatch.store_id.in_(sorted(stores)))
        if kind is not None:
            stmt = stmt.where(SalePriceMismatch.kind == kind)
        if reason is not None:
            stmt = stmt.where(SalePriceMismatch.reason == reason)
        return [MismatchPublic.model_validate(r) for r in s.scalars(stmt)]

    return reads(state, work)


@router.get("/promotions/audit", summary="How many sales the cloud audited, found "
            "mismatched, could not audit, and whose charged money differs")
def audit(state: StateDep, _: RetailRead, who: PrincipalDep,
          store_id: Annotated[Id | None, Query()] = None) -> AuditSummary:
    return reads(state, lambda s: AuditSummary.model_validate(
        audit_summary(s, scoped_store_filter(s, who, store_id))))


@router.post("/loyalty/jobs/settle-commissions",
             summary="Settle commissions whose return window closed (for a scheduler)")
def settle(state: StateDep, retail: RetailDep, _: HqRole) -> JobResult:
    done = writes(state, lambda s: distribution.settle_commissions(
        s, now_ms=state.clock.now_ms(), program=retail.program))
    retail.loyalty_metrics.commissions.labels(status="settled").inc(done)
    return JobResult(done=done)


@router.post("/loyalty/jobs/expire-coupons",
             summary="Mark coupons that lapsed unused (the scheduler runs this too)")
def expire_coupons(state: StateDep, _: HqRole) -> JobResult:
    return JobResult(done=writes(state, lambda s: coupons.expire_coupons(
        s, now_ms=state.clock.now_ms())))


@router.post("/loyalty/jobs/expire-points", summary="Expire points past their expiry")
def expire(state: StateDep, _: HqRole) -> JobResult:
    return JobResult(done=writes(state, lambda s: points.expire_due(
        s, now_ms=state.clock.now_ms())))
