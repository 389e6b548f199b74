"""Content (decision 0046): hq-admin publishes per-store content manifests; readers see,
per store, the manifest published against the one its box applied."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from cloud.api.deps import (
    AdminRole,
    AppState,
    PrincipalDep,
    ReadRole,
    StateDep,
    scoped_store_filter,
)
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.content.service import (
    Built,
    ContentError,
    ContentMetrics,
    ContentPublish,
    announce,
    build,
    status,
)
from cloud.promotions.signing import SnapshotSigner
from protocols.ids import Id

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/content", tags=["content"], route_class=JsonRoute)


@dataclass
class ContentState:
    signer: SnapshotSigner
    metrics: ContentMetrics


def get_content(request: Request) -> ContentState:
    state: ContentState = request.app.state.content
    return state


ContentDep = Annotated[ContentState, Depends(get_content)]

T = TypeVar("T")


async def publish_manifests(app: AppState, content: ContentState,
                            make: Callable[[Session], tuple[list[Built], T]]
                            ) -> tuple[list[Built], list[str], T]:
    """The one publish path of the content routes: ``make`` builds the stores' next
    manifests in one writer transaction (off the loop), each is announced retained on
    its store's topic. Returns the manifests, the
    stores whose announcement the broker refused (counted, logged: publish again) and
    ``make``'s own result. ``make``'s errors reach the caller, nothing announced."""

    def run() -> tuple[list[Built], T]:
        with app.writer.begin() as session:
            return make(session)

    built, extra = await asyncio.to_thread(run)  # blocking database work, off the loop
    failed = await announce(app.publisher, built, metrics=content.metrics)
    return built, failed, extra


class PublishResult(BaseModel):
    stores: int
    versions: dict[str, int]  # store -> the manifest version it was given
    failed: list[str]  # stores whose announcement the broker refused (republish)
    seconds: float


class PartPublic(BaseModel):
    published: str | None  # the version HQ published (None: nothing yet)
    applied: str | None  # the version the box's consumer took
    applied_ms: int | None  # since when (the box's clock)
    state: str  # converged | pending | refused | unpublished
    detail: str  # why the box could not take it, or ""


class LabelsPublic(BaseModel):
    current: int
    pending: int
    stale: int


class StoreContentPublic(BaseModel):
    store_id: str
    state: str  # converged | pending | refused | unpublished
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
    parts: dict[str, PartPublic]  # pricebook, schedule, playlists
    labels: LabelsPublic | None


@router.post("/publish", status_code=201,
             summary="Publish content (inline documents, assets by sha256) as each selected "
             "store's next signed manifest, retained on content/manifest",
             responses={404: {"description": "an asset that was never uploaded"},
                        409: {"description": "a concurrent publish to the same stores"},
                        413: {"description": "inline documents too large"},
                        422: {"description": "an empty selection or an artifact that is "
                              "not an asset"}})
async def publish_content(body: ContentPublish, app: StateDep, content: ContentDep,
                          _: AdminRole) -> PublishResult:
    started = time.monotonic()

    def make(session: Session) -> tuple[list[Built], None]:
        return build(session, body, signer=content.signer, now_ms=app.clock.now_ms()), None

    try:
        built, failed, _nothing = await publish_manifests(app, content, make)
    except ContentError as err:
        raise ApiProblem(err.status, err.detail, reason=err.reason) from err
    seconds = time.monotonic() - started
    content.metrics.publish_seconds.set(seconds)
    logger.info("content published to %d stores in %.2f s (%d failed)", len(built),
                seconds, len(failed))
    return PublishResult(stores=len(built), versions={b.store_id: b.version for b in built},
                         failed=failed,
                         seconds=round(seconds, 3))


@router.get("/status", summary="Per store: the manifest published against the one "
            "applied, since when; per part (price book, schedule, playlists) the version "
            "published against the one the box took and since when; shelf-label counts")
def content_status(session_state: StateDep, principal: PrincipalDep, _: ReadRole,
                   store_id: Annotated[Id | None, Query()] = None
                   ) -> list[StoreContentPublic]:
    with session_state.reader() as session:
        only = scoped_store_filter(session, principal, store_id)
        return [StoreContentPublic(**asdict(r)) for r in status(session, only=only)]
