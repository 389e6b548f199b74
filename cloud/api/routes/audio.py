"""Audio schedules (decision 0048): HQ authors the chain's schedule with its overrides;
every store gets its compiled document.

    PUT  /audio/schedule                      save a new version (hq-admin); 422 when it
                                              or an override does not compile, or names
                                              an asset never uploaded (/artifacts)
    GET  /audio/schedule                      the newest version as authored
    GET  /stores/{store}/audio/schedule?day=  the store's effective schedule, and what
                                              plays on ``day`` (default: today there)
    POST /audio/schedule/publish              the selected stores' (stores, regions,
                                              groups; none: every store with an audio
                                              unit) next content manifests carry it

Each store's signed content manifest (decision 0046) carries its compiled schedule as
the ``schedule`` document and the recordings as assets; the box hands both to its audio
units (edge_agent/modules/audio.py) and reports when they run it (decision 0050). A
single unit can still be given a schedule through its desired ``audio_schedule``.
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
from cloud.audio.compile import check_spec, day_plan, effective_schedule, latest, store_context
from cloud.audio.errors import AudioError
from cloud.audio.model import AudioScheduleSpec
from cloud.content.service import Built, Change, ContentError, compose
from cloud.db.models import Device
from cloud.db.models_artifacts import Artifact
from cloud.db.models_audio import AudioScheduleVersion
from cloud.rollouts.errors import RolloutError
from cloud.rollouts.targeting import stores_of
from protocols.audio import DEVICE_KIND
from protocols.content import ContentAsset
from protocols.ids import Id

logger = logging.getLogger(__name__)

router = APIRouter(tags=["audio"], route_class=JsonRoute)
StoreId = Annotated[Id, Path(description="store id")]
DOC = "schedule"  # the content manifest's document (edge_agent/modules/audio.py)


class ScheduleSaved(BaseModel):
    version: int
    created_ms: int
    assets: int


class ScheduleAuthored(ScheduleSaved):
    spec: dict[str, Any]
    created_by: str | None


class StoreSchedule(BaseModel):
    store_id: str
    schedule: dict[str, Any] = Field(description="protocols.audio.AudioSchedule")
    plan: dict[str, Any] = Field(description="what plays on the day asked for")


class Published(BaseModel):
    version: int  # the schedule's
    manifests: dict[str, int] = Field(description="store -> the content manifest version "
                                      "that carries the schedule")
    failed: list[str] = Field(description="stores whose manifest the broker did not take "
                              "(publish again)")
    without_unit: list[str] = Field(description="selected stores with no audio unit known")


def _problem(err: AudioError | RolloutError | ContentError) -> ApiProblem:
    return ApiProblem(err.status, err.detail, reason=err.reason)


def _save(session: Session, spec: AudioScheduleSpec, *, now_ms: int, by: str) -> ScheduleSaved:
    wanted = spec.assets()
    known = set(session.scalars(select(Artifact.sha256).where(Artifact.sha256.in_(wanted))))
    if unknown := sorted(wanted - known):
        raise AudioError(422, f"{len(unknown)} asset(s) never uploaded, e.g. {unknown[0]}: "
                         "upload them through /artifacts first", reason="unknown_asset")
    row = latest(session)
    version = (row.version if row else 0) + 1
    session.add(AudioScheduleVersion(version=version, spec=spec.model_dump(mode="json"),
                                     created_ms=now_ms, created_by=by or None))
    return ScheduleSaved(version=version, created_ms=now_ms, assets=len(wanted))


@router.put("/audio/schedule", status_code=201, summary="Save a new version of the chain's "
            "audio schedule with its regional, group and store overrides",
            responses={409: {"description": "another version was saved at the same time"},
                       422: {"description": "a schedule or override that does not compile, "
                             "or an asset never uploaded"}})
async def put_schedule(body: AudioScheduleSpec, app: StateDep, who: PrincipalDep,
                       _: AdminRole) -> ScheduleSaved:
    def run() -> ScheduleSaved:
        check_spec(body)
        with app.writer.begin() as session:
            return _save(session, body, now_ms=app.clock.now_ms(), by=who.name)
    try:
        saved = await asyncio.to_thread(run)  # database work off the loop
    except AudioError as err:
        raise _problem(err) from err
    except IntegrityError as err:
        raise ApiProblem(409, "another version was saved at the same time: PUT again",
                         reason="concurrent_version") from err
    logger.info("audio schedule v%d saved by %s", saved.version, who.name)
    return saved


@router.get("/audio/schedule", summary="The newest audio schedule as authored",
            responses={404: {"description": "none saved yet"}})
def get_schedule(session: SessionDep, _: ReadRole) -> ScheduleAuthored:
    row = latest(session)
    if row is None:
        raise ApiProblem(404, "no audio schedule has been saved", reason="nothing_published")
    spec = AudioScheduleSpec.model_validate(row.spec)
    return ScheduleAuthored(version=row.version, created_ms=row.created_ms,
                            assets=len(spec.assets()), spec=row.spec, created_by=row.created_by)


@router.get("/stores/{store_id}/audio/schedule", summary="A store's effective audio schedule "
            "and what plays on one day", responses={404: {"description": "none saved yet"}})
def get_store_schedule(store_id: StoreId, session: SessionDep, _: ReadRole,
                       day: Annotated[dt.date | None, Query(description="local date; "
                                      "default: today in the store's time zone")] = None,
                       ) -> StoreSchedule:
    if day is None:
        day = dt.datetime.now(ZoneInfo(store_context(session, store_id)[0])).date()
    try:
        doc = effective_schedule(session, store_id, day)
    except AudioError as err:
        raise _problem(err) from err
    return StoreSchedule(store_id=store_id, schedule=doc, plan=day_plan(doc, day))


def _plan(session: Session, body: StoreSelection) -> tuple[dict[str, list[str]], list[str]]:
    """Audio units per selected store, and the selected stores without one."""
    stmt = select(Device.store_id, Device.device_id).where(Device.kind == DEVICE_KIND)
    if not body.everything:
        chosen = stores_of(session, stores=body.stores, regions=body.regions,
                           groups=body.groups)
        stmt = stmt.where(Device.store_id.in_(chosen))
    else:
        chosen = []
    units: dict[str, list[str]] = {}
    for store_id, device_id in session.execute(stmt.order_by(Device.store_id,
                                                             Device.device_id)):
        units.setdefault(store_id, []).append(device_id)
    return units, [s for s in chosen if s not in units]


def _changes(session: Session, stores: list[str], day: dt.date) -> dict[str, Change]:
    """Each store's schedule document and its recordings, as a manifest change."""
    changes: dict[str, Change] = {}
    sizes: dict[str, int] = {}
    for store_id in stores:
        doc = effective_schedule(session, store_id, day)
        wanted = {t["sha256"] for t in doc["tracks"].values()} - set(sizes)
        if wanted:
            sizes.update((sha, size) for sha, size in session.execute(
                select(Artifact.sha256, Artifact.size).where(Artifact.sha256.in_(wanted))))
        assets = {t["sha256"]: ContentAsset(sha256=t["sha256"], size=sizes[t["sha256"]],
                                            name=(t.get("title") or track)[:200], doc=DOC)
                  for track, t in sorted(doc["tracks"].items())}
        changes[store_id] = Change(documents={DOC: doc}, assets=list(assets.values()))
    return changes


@router.post("/audio/schedule/publish", status_code=201, summary="Publish the newest "
             "schedule, compiled per store, in the selected stores' content manifests",
             responses={404: {"description": "none saved yet"},
                        409: {"description": "a concurrent publish to the same stores"},
                        422: {"description": "an empty region or group, or a store's "
                              "overrides that do not compile"}})
async def publish_schedule(body: StoreSelection, app: StateDep, content: ContentDep,
                           _: AdminRole) -> Published:
    # a day early: a store west of UTC may still be on yesterday
    since = (dt.datetime.fromtimestamp(app.clock.now_ms() / 1000, dt.UTC).date()
             - dt.timedelta(days=1))

    def make(session: Session) -> tuple[list[Built], tuple[list[str], int]]:
        units, without = _plan(session, body)
        changes = _changes(session, list(units), since)
        row = latest(session)
        built = compose(session, changes, signer=content.signer, now_ms=app.clock.now_ms())
        return built, (without, row.version if row is not None else 0)

    try:
        built, failed, (without, version) = await publish_manifests(app, content, make)
    except (AudioError, RolloutError, ContentError) as err:
        raise _problem(err) from err
    logger.info("audio schedule v%d published to %d store(s) (%d failed)", version,
                len(built), len(failed))
    return Published(version=version, manifests={b.store_id: b.version for b in built},
                     failed=failed, without_unit=without)
