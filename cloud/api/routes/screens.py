"""Screen playlists (decision 0051): HQ authors the chain's playlists for the cart
screens and the signage; every store gets them in its content manifest.

    PUT  /screens/playlists                        save a new version (hq-admin); 422 for
                                                   an invalid window, item or playlist, or
                                                   an asset never uploaded (/artifacts)
    GET  /screens/playlists                        the newest version as authored
    GET  /stores/{store}/screens/playlists?at=&zone=
                                                   the store's document, and what plays on
                                                   each surface in ``zone`` at ``at``
                                                   (default: now)
    POST /screens/playlists/publish                the selected stores' (stores, regions,
                                                   groups; none: every store) next content
                                                   manifests carry it

Each store's signed content manifest (decision 0046) carries its document as
``playlists`` and the images and videos as assets; the box serves them to its screens
(edge_agent/modules/screens.py) and reports when it took them (the ``playlists`` part).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.api.deps import AdminRole, PrincipalDep, ReadRole, SessionDep, StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.routes.content import ContentDep, publish_manifests
from cloud.api.routes.store_targeting import StoreSelection
from cloud.content.service import Built, Change, ContentError, compose
from cloud.db.models import Store
from cloud.db.models_artifacts import Artifact
from cloud.db.models_screens import ScreenPlaylistsVersion
from cloud.rollouts.errors import RolloutError
from cloud.rollouts.targeting import stores_of
from cloud.screens.compile import latest, store_playlists
from cloud.screens.errors import ScreensError
from cloud.screens.model import ScreenPlaylistsSpec
from protocols.content import ContentAsset
from protocols.ids import Id
from protocols.screens import DOCUMENT, SURFACES, ScreenPlaylists

logger = logging.getLogger(__name__)

router = APIRouter(tags=["screens"], route_class=JsonRoute)
StoreId = Annotated[Id, Path(description="store id")]
ASSET_KIND = "asset"  # protocols.artifacts: content assets are artifacts of this kind


class PlaylistsSaved(BaseModel):
    version: int
    created_ms: int
    assets: int


class PlaylistsAuthored(PlaylistsSaved):
    spec: dict[str, Any]
    created_by: str | None


class NowItem(BaseModel):
    playlist: str
    item: dict[str, Any] = Field(description="protocols.screens.Item")


class StorePlaylists(BaseModel):
    store_id: str
    playlists: dict[str, Any] = Field(description="protocols.screens.ScreenPlaylists")
    at: str = Field(description="the time asked about, in the store's time zone")
    zone: str | None
    now: dict[str, list[NowItem]] = Field(description="surface -> what plays there then")


class Published(BaseModel):
    version: int  # the playlists'
    manifests: dict[str, int] = Field(description="store -> the content manifest version "
                                      "that carries the playlists")
    failed: list[str] = Field(description="stores whose manifest the broker did not take "
                              "(publish again)")


def _problem(err: ScreensError | RolloutError | ContentError) -> ApiProblem:
    return ApiProblem(err.status, err.detail, reason=err.reason)


def _save(session: Session, spec: ScreenPlaylistsSpec, *, now_ms: int,
          by: str) -> PlaylistsSaved:
    wanted = spec.assets()
    known = set(session.scalars(select(Artifact.sha256).where(
        Artifact.sha256.in_(wanted), Artifact.kind == ASSET_KIND)))
    if unknown := sorted(wanted - known):
        raise ScreensError(422, f"{len(unknown)} asset(s) never uploaded as content assets, "
                           f"e.g. {unknown[0]}: upload them through /artifacts (kind asset, "
                           "target content) first", reason="unknown_asset")
    row = latest(session)
    version = (row.version if row else 0) + 1
    session.add(ScreenPlaylistsVersion(version=version, spec=spec.model_dump(mode="json"),
                                       created_ms=now_ms, created_by=by or None))
    return PlaylistsSaved(version=version, created_ms=now_ms, assets=len(wanted))


@router.put("/screens/playlists", status_code=201, summary="Save a new version of the "
            "chain's screen playlists (cart screens and signage)",
            responses={409: {"description": "another version was saved at the same time"},
                       422: {"description": "an invalid window, item or playlist, or an "
                             "asset never uploaded"}})
async def put_playlists(body: ScreenPlaylistsSpec, app: StateDep, who: PrincipalDep,
                        _: AdminRole) -> PlaylistsSaved:
    def run() -> PlaylistsSaved:
        with app.writer.begin() as session:
            return _save(session, body, now_ms=app.clock.now_ms(), by=who.name)
    try:
        saved = await asyncio.to_thread(run)  # database work off the loop
    except ScreensError as err:
        raise _problem(err) from err
    except IntegrityError as err:
        raise ApiProblem(409, "another version was saved at the same time: PUT again",
                         reason="concurrent_version") from err
    logger.info("screen playlists v%d saved by %s", saved.version, who.name)
    return saved


@router.get("/screens/playlists", summary="The newest screen playlists as authored",
            responses={404: {"description": "none saved yet"}})
def get_playlists(session: SessionDep, _: ReadRole) -> PlaylistsAuthored:
    row = latest(session)
    if row is None:
        raise ApiProblem(404, "no screen playlists have been saved", reason="nothing_published")
    spec = ScreenPlaylistsSpec.model_validate(row.spec)
    return PlaylistsAuthored(version=row.version, created_ms=row.created_ms,
                             assets=len(spec.assets()), spec=row.spec,
                             created_by=row.created_by)


@router.get("/stores/{store_id}/screens/playlists", summary="A store's screen playlists "
            "and what plays on each surface in a zone at one time",
            responses={404: {"description": "none saved yet"}})
def get_store_playlists(
        store_id: StoreId, session: SessionDep, app: StateDep, _: ReadRole,
        at: Annotated[dt.datetime | None, Query(description="ISO date-time; without an "
                      "offset it is the store's local time; default: now")] = None,
        zone: Annotated[Id | None, Query(description="the screen's zone; none: a screen "
                        "in no zone (only what is not limited to zones)")] = None,
) -> StorePlaylists:
    try:
        doc = store_playlists(session, store_id)
    except ScreensError as err:
        raise _problem(err) from err
    playlists = ScreenPlaylists.model_validate(doc)
    if at is None:
        at = dt.datetime.fromtimestamp(app.clock.now_ms() / 1000, dt.UTC)
    elif at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(playlists.timezone))
    now: dict[str, list[NowItem]] = {
        surface: [NowItem(playlist=p.name, item=i.model_dump(mode="json", exclude_none=True))
                  for p, i in playlists.playing(surface=surface, zone=zone, at=at)]
        for surface in SURFACES}
    return StorePlaylists(store_id=store_id, playlists=doc, zone=zone, now=now,
                          at=playlists.local(at).isoformat())


def _selected(session: Session, body: StoreSelection) -> list[str]:
    """The selected stores (none: every store the cloud knows); 422 for a store named
    that the cloud has never heard of."""
    known = set(session.scalars(select(Store.store_id)))
    if body.everything:
        return sorted(known)
    chosen = stores_of(session, stores=body.stores, regions=body.regions, groups=body.groups)
    if unknown := [s for s in chosen if s not in known]:
        raise ScreensError(422, f"{len(unknown)} unknown store(s), e.g. {unknown[0]}",
                           reason="unknown_store")
    return chosen


def _changes(session: Session, stores: list[str]) -> dict[str, Change]:
    """Each store's playlists document and its images and videos, as a manifest change."""
    changes: dict[str, Change] = {}
    assets: list[ContentAsset] | None = None
    for store_id in stores:
        doc = store_playlists(session, store_id)
        if assets is None:  # the same for every store: only the time zone differs
            items = {i.sha256: i for p in ScreenPlaylists.model_validate(doc).playlists
                     for i in p.items if i.sha256}
            sizes = {sha: size for sha, size in session.execute(
                select(Artifact.sha256, Artifact.size).where(Artifact.sha256.in_(items)))}
            assets = [ContentAsset(sha256=sha, size=sizes[sha], doc=DOCUMENT,
                                   name=(item.title or item.id)[:200])
                      for sha, item in sorted(items.items())]
        changes[store_id] = Change(documents={DOCUMENT: doc}, assets=assets)
    return changes


@router.post("/screens/playlists/publish", status_code=201, summary="Publish the newest "
             "screen playlists in the selected stores' content manifests",
             responses={404: {"description": "none saved yet"},
                        409: {"description": "a concurrent publish to the same stores"},
                        422: {"description": "an empty region or group, an unknown store, "
                              "or no store at all"}})
async def publish_playlists(body: StoreSelection, app: StateDep, content: ContentDep,
                            _: AdminRole) -> Published:
    def make(session: Session) -> tuple[list[Built], int]:
        row = latest(session)
        if row is None:
            raise ScreensError(404, "no screen playlists have been saved",
                               reason="nothing_published")
        stores = _selected(session, body)
        if not stores:
            raise ScreensError(422, "no store is known yet", reason="empty_selection")
        built = compose(session, _changes(session, stores), signer=content.signer,
                        now_ms=app.clock.now_ms())
        return built, row.version

    try:
        built, failed, version = await publish_manifests(app, content, make)
    except (ScreensError, RolloutError, ContentError) as err:
        raise _problem(err) from err
    logger.info("screen playlists v%d published to %d store(s) (%d failed)", version,
                len(built), len(failed))
    return Published(version=version, manifests={b.store_id: b.version for b in built},
                     failed=failed)
