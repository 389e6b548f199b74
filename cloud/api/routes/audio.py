"""Audio schedules (decision 0048): HQ authors the chain's schedule with its overrides;
every store gets its compiled document.

    PUT  /audio/schedule                      save a new version (hq-admin); 422 when it
                                              or an override does not compile, or names
                                              an asset never uploaded (/artifacts)
    GET  /audio/schedule                      the newest version as authored
    GET  /stores/{store}/audio/schedule?day=  the store's effective schedule, and what
                                              plays on ``day`` (default: today there)
    POST /audio/schedule/publish              send it to the audio units of the selected
                                              stores (stores, regions, groups; none: every
                                              store with one) as their desired
                                              ``audio_schedule`` (decision 0037)

The desired shadow carries the schedule until the signed content manifest (decision
0046) does; a store's units converge to it like to any desired key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.api.deps import AdminRole, AppState, PrincipalDep, ReadRole, SessionDep, StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.routes.shadows import set_desired
from cloud.api.schemas import ShadowDesiredUpdate
from cloud.audio.compile import check_spec, day_plan, effective_schedule, latest, store_context
from cloud.audio.errors import AudioError
from cloud.audio.model import AudioScheduleSpec
from cloud.db.models import Device, Shadow
from cloud.db.models_artifacts import Artifact
from cloud.db.models_audio import AudioScheduleVersion
from cloud.rollouts.errors import RolloutError
from cloud.rollouts.targeting import stores_of
from protocols.audio import DEVICE_KIND
from protocols.ids import Id

logger = logging.getLogger(__name__)

router = APIRouter(tags=["audio"], route_class=JsonRoute)
StoreId = Annotated[Id, Path(description="store id")]
KEY = "audio_schedule"  # the audio driver's desired key (protocols.shadow_keys)
SHADOW_RETRIES = 3  # another writer between our read and our write: read again


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


class PublishBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stores: list[Id] = Field(default_factory=list, max_length=10_000)
    regions: list[Id] = Field(default_factory=list, max_length=100)
    groups: list[Id] = Field(default_factory=list, max_length=100)


class UnitPublished(BaseModel):
    store_id: str
    device_id: str
    desired_version: int


class Published(BaseModel):
    version: int
    units: list[UnitPublished]
    without_unit: list[str] = Field(description="selected stores with no audio unit known")


def _problem(err: AudioError | RolloutError) -> ApiProblem:
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


def _plan(session: Session, body: PublishBody) -> tuple[dict[str, list[str]], list[str]]:
    """Audio units per selected store, and the selected stores without one."""
    stmt = select(Device.store_id, Device.device_id).where(Device.kind == DEVICE_KIND)
    if body.stores or body.regions or body.groups:
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


def _desired(session: Session, store_id: str, device_id: str) -> tuple[dict[str, Any], int]:
    shadow = session.get(Shadow, (store_id, device_id))
    return (dict(shadow.desired or {}), shadow.desired_version) if shadow else ({}, 0)


@router.post("/audio/schedule/publish", summary="Send the newest schedule, compiled per "
             "store, to the audio units of the selected stores",
             responses={404: {"description": "none saved yet"},
                        422: {"description": "an empty region or group, or a store's "
                              "overrides that do not compile"},
                        503: {"description": "stored, but the broker did not take it"}})
async def publish_schedule(body: PublishBody, app: StateDep, _: AdminRole) -> Published:
    today = dt.datetime.fromtimestamp(app.clock.now_ms() / 1000, dt.UTC).date()

    def plan() -> tuple[dict[str, list[str]], list[str], dict[str, dict[str, Any]]]:
        with app.reader() as session:
            units, without = _plan(session, body)
            # a day early: a store west of UTC may still be on yesterday
            docs = {s: effective_schedule(session, s, today - dt.timedelta(days=1))
                    for s in units}
        return units, without, docs
    try:
        units, without, docs = await asyncio.to_thread(plan)
    except (AudioError, RolloutError) as err:
        raise _problem(err) from err
    published: list[UnitPublished] = []
    for store_id, devices in units.items():
        for device_id in devices:
            published.append(await _send(app, store_id, device_id, docs[store_id]))
    version = next(iter(docs.values()))["version"] if docs else 0
    logger.info("audio schedule v%d published to %d unit(s)", version, len(published))
    return Published(version=version, units=published, without_unit=without)


async def _send(app: AppState, store_id: str, device_id: str, doc: dict[str, Any]) -> UnitPublished:
    """Replace the unit's desired schedule (not merge: a track removed must go)."""
    for attempt in range(SHADOW_RETRIES):
        def read() -> tuple[dict[str, Any], int]:
            with app.reader() as session:
                return _desired(session, store_id, device_id)
        state, version = await asyncio.to_thread(read)
        state[KEY] = doc
        try:
            shadow = await set_desired(app, store_id, device_id, ShadowDesiredUpdate(
                state=state, expected_version=version), patch=False)
        except ApiProblem as err:
            if err.status != 409 or attempt == SHADOW_RETRIES - 1:
                raise
            continue
        return UnitPublished(store_id=store_id, device_id=device_id,
                             desired_version=shadow.desired_version)
    raise AssertionError("unreachable")  # pragma: no cover
