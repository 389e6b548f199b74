"""Publish per-store content manifests and follow what each store applied (decision 0046).

    manifests = build(session, request, signer=signer, now_ms=now)  # recorded, signed
    failed = await announce(publisher, manifests)                  # retained, per store
    rows = status(session, store_id=None)                          # published vs applied

A publish selects stores like a rollout (explicit stores, regions, groups:
``cloud.rollouts.targeting.stores_of``) and gives each its next manifest version
(versions rise per store), carrying the documents inline, the assets by sha256 (each an
uploaded artifact of kind ``asset``) and the store's current price book version. The
box reports what it applied as a ``content_status`` event; ``ContentHook`` keeps the
newest report per store.

Errors: ``ContentError`` (``status``, ``reason``: the HTTP status and problem reason).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.db.models import Store
from cloud.db.models_artifacts import Artifact
from cloud.db.models_content import ContentManifest as ManifestRow
from cloud.db.models_content import ContentStatus
from cloud.db.models_loyalty import PriceBookVersion
from cloud.errors import CloudError, PublishError
from cloud.pricebook.service import CHAIN
from cloud.promotions.signing import SnapshotSigner
from cloud.publish import Publisher
from cloud.rollouts.errors import RolloutError
from cloud.rollouts.targeting import MAX_STORES, stores_of
from protocols import topics
from protocols.artifacts import ArtifactKind, Sha256
from protocols.content import (
    MAX_ASSETS,
    MAX_DOCUMENTS_BYTES,
    PARTS,
    ContentAsset,
    ContentManifest,
    ContentStatusReport,
)
from protocols.ids import Id
from protocols.messages import Event

logger = logging.getLogger(__name__)

# Convergence states of a store (the gauge's labels and the status API's ``state``).
STATES = ("converged", "pending", "refused", "unpublished")
LABEL_STATES = ("current", "pending", "stale")


class ContentError(CloudError):
    reason = "content"

    def __init__(self, status: int, detail: str, *, reason: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.reason = status, detail, reason


class AssetRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: Sha256
    name: str = Field(min_length=1, max_length=200)


class ContentPublish(BaseModel):
    """What HQ publishes: documents and assets, to stores, regions and groups."""

    model_config = ConfigDict(extra="forbid")

    stores: list[Id] = Field(default_factory=list, max_length=MAX_STORES)
    regions: list[Id] = Field(default_factory=list, max_length=100)
    groups: list[Id] = Field(default_factory=list, max_length=100)
    # e.g. {"schedule": {...}, "playlists": {...}}; carried inline in every manifest
    documents: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=32)
    assets: list[AssetRef] = Field(default_factory=list, max_length=MAX_ASSETS)


class ContentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "storefleet_content_manifests_published", "Store manifests published, by "
            "result (published, failed: the broker refused; the store gets the next one)",
            ["result"], registry=registry)
        self.reports = Counter(
            "storefleet_content_reports", "content_status reports from boxes, by result "
            "(stored, stale: older than the stored one)", ["result"], registry=registry)
        self.publish_seconds = Gauge(
            "storefleet_content_last_publish_seconds", "Wall time of the last publish, "
            "building and announcing every store's manifest", registry=registry)


def _stores(session: Session, req: ContentPublish) -> list[str]:
    try:
        stores = stores_of(session, stores=list(dict.fromkeys(req.stores)),  # once each
                           regions=req.regions, groups=req.groups)
    except RolloutError as err:  # the shared selection's refusal, as ours
        raise ContentError(err.status, err.detail, reason=err.reason) from err
    if not stores:
        raise ContentError(422, "the selection reaches no store: give stores, regions or "
                           "groups", reason="empty_selection")
    if len(stores) > MAX_STORES:
        raise ContentError(422, f"the selection reaches {len(stores)} stores, at most "
                           f"{MAX_STORES} per publish", reason="too_many_stores")
    return stores


def _assets(session: Session, refs: Sequence[AssetRef]) -> list[ContentAsset]:
    wanted = {r.sha256 for r in refs}
    rows = {a.sha256: a for a in session.scalars(
        select(Artifact).where(Artifact.sha256.in_(wanted)))} if wanted else {}
    missing = sorted(wanted - set(rows))
    if missing:
        raise ContentError(404, f"no uploaded artifact {missing[0]}", reason="unknown_asset")
    wrong = [s for s, a in rows.items() if a.kind != ArtifactKind.ASSET.value]
    if wrong:
        raise ContentError(422, f"artifact {wrong[0]} is of kind {rows[wrong[0]].kind}, "
                           "not asset", reason="not_an_asset")
    return [ContentAsset(sha256=r.sha256, size=rows[r.sha256].size, name=r.name)
            for r in refs]


def _price_books(session: Session, stores: list[str]) -> dict[str, int | None]:
    """Each store's effective price book version: the newer of the chain's and its own
    (versions are one sequence across scopes, ``cloud.pricebook``)."""
    latest: dict[str, int] = {scope: v for scope, v in session.execute(
        select(PriceBookVersion.scope, func.max(PriceBookVersion.version))
        .where(PriceBookVersion.scope.in_([CHAIN, *stores]))
        .group_by(PriceBookVersion.scope))}
    chain = latest.get(CHAIN)
    return {s: max((v for v in (chain, latest.get(s)) if v is not None), default=None)
            for s in stores}


@dataclass(frozen=True, slots=True)
class Change:
    """What a store's next manifest changes: ``documents`` replace those keys (``None``
    removes one) and ``assets`` are those documents' assets (each with its ``doc``);
    ``loose`` replaces the assets published on their own (``doc`` ""), kept when None.
    Everything else (other documents and their assets) carries over from the store's
    previous manifest, so publishing a schedule never drops the playlists."""

    documents: Mapping[str, dict[str, Any] | None]
    assets: Sequence[ContentAsset] = ()
    loose: Sequence[ContentAsset] | None = None


def build(session: Session, req: ContentPublish, *, signer: SnapshotSigner,
          now_ms: int) -> list[Built]:
    """Each selected store's next manifest, signed and recorded (not yet announced)."""
    if len(json.dumps(req.documents)) > MAX_DOCUMENTS_BYTES:
        raise ContentError(413, f"documents take more than {MAX_DOCUMENTS_BYTES} bytes of "
                           "JSON; upload large content as assets", reason="too_large")
    stores = _stores(session, req)
    change = Change(documents=req.documents, loose=_assets(session, req.assets))
    return compose(session, dict.fromkeys(stores, change), signer=signer, now_ms=now_ms)


def compose(session: Session, changes: Mapping[str, Change], *, signer: SnapshotSigner,
            now_ms: int) -> list[Built]:
    """Each store's next manifest: its previous one with ``changes[store]`` applied and
    its current price book version, signed and recorded (announce them after commit)."""
    stores = list(changes)
    books = _price_books(session, stores)
    previous = _newest(session, stores)
    rows = []
    for store in stores:
        manifest = _next(store, previous.get(store), changes[store],
                         price_book_version=books[store], now_ms=now_ms)
        row = ManifestRow(store_id=store, version=manifest.version, created_ms=now_ms,
                          signed=signer.sign(manifest.model_dump(mode="json")))
        session.add(row)
        rows.append(Built(store_id=store, version=manifest.version, signed=row.signed))
    try:
        session.flush()
    except sa_exc.IntegrityError as err:
        # Two publishes at once on PostgreSQL: the loser's transaction is rolled back.
        raise ContentError(409, "another publish gave these stores the same version at "
                           "the same time; publish again", reason="conflict") from err
    return rows


def _next(store: str, base: ContentManifest | None, change: Change, *,
          price_book_version: int | None, now_ms: int) -> ContentManifest:
    documents = dict(base.documents) if base else {}
    replaced = set(change.documents)
    for key, doc in change.documents.items():
        if doc is None:
            documents.pop(key, None)
        else:
            documents[key] = doc
    if len(json.dumps(documents)) > MAX_DOCUMENTS_BYTES:
        raise ContentError(413, f"store {store}'s documents would take more than "
                           f"{MAX_DOCUMENTS_BYTES} bytes of JSON; upload large content "
                           "as assets", reason="too_large")
    if change.loose is not None:
        replaced.add("")
    kept = [a for a in base.assets if a.doc not in replaced] if base else []
    new = [*change.assets, *(change.loose or ())]
    assets = list({(a.doc, a.sha256): a for a in [*kept, *new]}.values())
    if len(assets) > MAX_ASSETS:
        raise ContentError(422, f"store {store}'s manifest would name {len(assets)} assets, "
                           f"at most {MAX_ASSETS}", reason="too_many_assets")
    return ContentManifest(store_id=store, version=(base.version if base else 0) + 1,
                           created_ms=now_ms, price_book_version=price_book_version,
                           documents=documents, assets=assets)


def _newest(session: Session, stores: list[str]) -> dict[str, ContentManifest]:
    """Each store's newest recorded manifest (as signed: the payload, not re-verified:
    we wrote it)."""
    newest = (select(ManifestRow.store_id, func.max(ManifestRow.version).label("v"))
              .where(ManifestRow.store_id.in_(stores)).group_by(ManifestRow.store_id)
              .subquery())
    rows = session.execute(
        select(ManifestRow.store_id, ManifestRow.signed)
        .join(newest, (ManifestRow.store_id == newest.c.store_id)
              & (ManifestRow.version == newest.c.v)))
    return {s: ContentManifest.model_validate(signed["payload"]) for s, signed in rows}


@dataclass(frozen=True, slots=True)
class Built:
    store_id: str
    version: int
    signed: dict[str, Any]


async def announce(publisher: Publisher, rows: Sequence[Built], *,
                   metrics: ContentMetrics) -> list[str]:
    """Publish each store's manifest (retained, QoS 1); returns the stores that failed
    (counted and logged; their box keeps its applied content until the next publish)."""
    failed = []
    for row in rows:
        payload = json.dumps(row.signed, separators=(",", ":")).encode()
        try:
            await publisher.publish(topics.content_manifest(row.store_id), payload, qos=1,
                                    retain=True)
        except PublishError as err:
            failed.append(row.store_id)
            metrics.published.labels(result="failed").inc()
            logger.error("content manifest %d for store %s not published: %s", row.version,
                         row.store_id, err)
            continue
        metrics.published.labels(result="published").inc()
    return failed


@dataclass(frozen=True, slots=True)
class PartState:
    """One part of a store's content: the version HQ published and the one the box's
    consumer took, since when."""

    published: str | None
    applied: str | None
    applied_ms: int | None
    state: str  # converged | pending | refused | unpublished
    detail: str


@dataclass(frozen=True, slots=True)
class StoreContent:
    store_id: str
    state: str
    published_version: int | None
    published_ms: int | None
    applied_version: int | None
    applied_ms: int | None
    price_book_version: int | None
    schedule_version: str | None
    assets_present: int
    assets_missing: int
    detail: str
    reported_ms: int | None
    parts: dict[str, PartState]
    labels: dict[str, int] | None


def _state(published: int | None, report: ContentStatus | None) -> str:
    if published is None:
        return "unpublished"
    if report is not None and report.applied_version == published:
        return "converged"
    return "refused" if report is not None and report.detail else "pending"


def _part(published: str | None, applied: Mapping[str, Any] | None) -> PartState:
    version = str(applied["version"]) if applied else None
    detail = str(applied.get("detail", "")) if applied else ""
    if published is None:
        state = "unpublished"
    elif version == published:
        state = "converged"
    else:
        state = "refused" if detail else "pending"
    return PartState(published=published, applied=version,
                     applied_ms=applied.get("applied_ms") if applied else None,
                     state=state, detail=detail)


def _parts(manifest: ContentManifest | None, book: int | None,
           report: ContentStatus | None) -> dict[str, PartState]:
    applied = (report.parts or {}) if report else {}
    published = {"pricebook": None if book is None else str(book),
                 "schedule": manifest.document_version("schedule") if manifest else None,
                 "playlists": manifest.document_version("playlists") if manifest else None}
    return {part: _part(published[part], applied.get(part)) for part in PARTS}


def status(session: Session, *, only: Collection[str] | None = None) -> list[StoreContent]:
    """Per store (every known store, or those in ``only``): published against applied,
    as a whole manifest and per part."""
    stores = sorted(only) if only is not None else list(
        session.scalars(select(Store.store_id).order_by(Store.store_id)))
    published = _newest(session, stores)
    books = _price_books(session, stores)
    reports = {r.store_id: r for r in session.scalars(
        select(ContentStatus).where(ContentStatus.store_id.in_(stores)))}
    out = []
    for s in stores:
        m = published.get(s)
        version, ms = (m.version, m.created_ms) if m else (None, None)
        r = reports.get(s)
        out.append(StoreContent(
            store_id=s, state=_state(version, r), published_version=version,
            published_ms=ms, applied_version=r.applied_version if r else None,
            applied_ms=r.applied_ms if r else None,
            price_book_version=r.price_book_version if r else None,
            schedule_version=r.schedule_version if r else None,
            assets_present=r.assets_present if r else 0,
            assets_missing=r.assets_missing if r else 0,
            detail=r.detail if r else "", reported_ms=r.reported_ms if r else None,
            parts=_parts(m, books[s], r), labels=r.labels if r else None))
    return out


@dataclass(frozen=True, slots=True)
class ContentFigures:
    """The chain's content convergence, counted over every store: HQ's gauges
    ``storefleet_content_stores{state}``, ``_parts{part,state}``, ``_labels{state}``,
    exported with the fleet gauges on scrape (``cloud.fleet_metrics``), so every API
    replica serves the same figures and no box report recounts the chain."""

    stores: dict[str, int]  # state -> stores
    parts: dict[tuple[str, str], int]  # (part, state) -> stores
    labels: dict[str, int]  # state -> shelf labels


def figures(session: Session) -> ContentFigures:
    stores = dict.fromkeys(STATES, 0)
    parts = {(p, st): 0 for p in PARTS for st in STATES}
    labels = dict.fromkeys(LABEL_STATES, 0)
    for row in status(session):
        stores[row.state] += 1
        for part, p in row.parts.items():
            parts[(part, p.state)] += 1
        for state in LABEL_STATES:
            labels[state] += int((row.labels or {}).get(state, 0))
    return ContentFigures(stores=stores, parts=parts, labels=labels)


class ContentHook:
    """Ingest's post-commit hook for ``content_status``: keeps each store's newest report
    (by the box's time; idempotent: the same report again changes nothing)."""

    def __init__(self, metrics: ContentMetrics) -> None:
        self.metrics = metrics

    def __call__(self, session: Session, event: Event, now_ms: int) -> None:
        try:
            report = ContentStatusReport.model_validate(event.data)
        except ValidationError as err:
            raise ValueError(f"bad content_status data: {err.errors()[0]['msg']}") from err
        row = session.get(ContentStatus, event.store_id, with_for_update=True)
        if row is not None and row.reported_ms > event.ts:
            self.metrics.reports.labels(result="stale").inc()
            return
        if row is None:
            row = ContentStatus(store_id=event.store_id)
            session.add(row)
        row.applied_version, row.applied_ms = report.version, report.applied_ms
        row.price_book_version = report.price_book_version
        row.schedule_version = report.schedule_version
        row.assets_present, row.assets_missing = report.assets_present, report.assets_missing
        row.detail, row.reported_ms = report.detail, event.ts
        row.parts = {k: p.model_dump() for k, p in report.parts.items() if k in PARTS}
        row.labels = report.labels.model_dump() if report.labels else None
        self.metrics.reports.labels(result="stored").inc()
