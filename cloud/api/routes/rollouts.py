"""Rollouts (decision 0040): hq-admin creates, pauses, resumes and aborts them; every
reader sees them with per-wave progress. Offers go out through ``RolloutOfferer``."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.api.deps import AdminRole, ReadRole, SessionDep, StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.db.models_rollouts import Rollout, RolloutTarget
from cloud.rollouts.service import (
    RolloutError,
    RolloutOfferer,
    RolloutPlan,
    create,
    device_of,
    progress,
    set_state,
    targets_of,
)
from protocols.ids import Id

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/rollouts", tags=["rollouts"], route_class=JsonRoute)

RolloutId = Annotated[Id, Path(description="rollout id")]


@dataclass
class RolloutState:
    offerer: RolloutOfferer


def get_offerer(request: Request) -> RolloutOfferer:
    state: RolloutState = request.app.state.rollouts
    return state.offerer


OffererDep = Annotated[RolloutOfferer, Depends(get_offerer)]


class RolloutPublic(BaseModel):
    id: str
    sha256: str
    target: str
    version: str
    device: str
    state: str
    wave: int
    reason: str | None
    canary_size: int
    wave_size: int
    success_pct: int
    failure_threshold: int
    deadline_s: int
    created_ms: int
    updated_ms: int
    stores: int
    # what was asked (stores, regions, groups, models); None for rollouts before 0013
    selection: dict[str, list[str]] | None
    deferred: int  # targets busy on their box right now (decision 0043)


class RolloutDetail(RolloutPublic):
    waves: list[dict[str, Any]]
    targets: list[dict[str, Any]]


def _public(r: Rollout, deferred: int = 0) -> RolloutPublic:
    return RolloutPublic(
        id=r.id, sha256=r.sha256, target=r.target, version=r.version, device=r.device,
        state=r.state, wave=r.wave, reason=r.reason, canary_size=r.canary_size,
        wave_size=r.wave_size, success_pct=r.success_pct,
        failure_threshold=r.failure_threshold, deadline_s=r.deadline_s,
        created_ms=r.created_ms, updated_ms=r.updated_ms, stores=len(r.stores),
        selection=r.selection, deferred=deferred)


def _detail(session: Session, r: Rollout) -> RolloutDetail:
    targets = targets_of(session, r.id)
    deferred = sum(t.state == "deferred" for t in targets)
    return RolloutDetail(
        **_public(r, deferred).model_dump(), waves=progress(targets),
        targets=[{"store_id": t.store_id, "device": device_of(r, t), "wave": t.wave,
                  "state": t.state, "detail": t.detail, "deadline_ms": t.deadline_ms}
                 for t in targets])


def _problem(err: RolloutError) -> ApiProblem:
    return ApiProblem(err.status, err.detail, reason=err.reason)


@router.post("", status_code=201, summary="Start a rollout of an artifact to stores "
             "selected by any union of stores, regions, groups and (firmware) device models",
             responses={404: {"description": "unknown artifact"},
                        422: {"description": "a plan that does not fit the artifact, or a "
                              "selection that is empty or contradictory"}})
async def create_rollout(body: RolloutPlan, app: StateDep, offerer: OffererDep,
                         _: AdminRole, response: Response) -> RolloutDetail:
    def run() -> RolloutDetail:
        with app.writer.begin() as session:
            return _detail(session, create(session, body, now_ms=app.clock.now_ms()))
    try:
        out = await asyncio.to_thread(run)
    except RolloutError as err:
        raise _problem(err) from err
    logger.info("rollout %s of %s to %d stores created", out.id, out.sha256, out.stores)
    await offerer.tick()
    response.headers["Location"] = f"/api/v1/rollouts/{out.id}"
    return out


@router.get("", summary="Rollouts, newest first")
def list_rollouts(session: SessionDep, _: ReadRole) -> list[RolloutPublic]:
    rows = list(session.scalars(select(Rollout).order_by(Rollout.created_ms.desc(),
                                                         Rollout.id.desc()).limit(500)))
    deferred: dict[str, int] = {rollout_id: n for rollout_id, n in session.execute(
        select(RolloutTarget.rollout_id, func.count())
        .where(RolloutTarget.state == "deferred",
               RolloutTarget.rollout_id.in_([r.id for r in rows]))
        .group_by(RolloutTarget.rollout_id))} if rows else {}
    return [_public(r, deferred.get(r.id, 0)) for r in rows]


@router.get("/{rollout_id}", summary="A rollout with its progress per wave",
            responses={404: {"description": "unknown rollout"}})
def get_rollout(rollout_id: RolloutId, session: SessionDep, _: ReadRole) -> RolloutDetail:
    r = session.get(Rollout, rollout_id)
    if r is None:
        raise ApiProblem(404, f"no rollout {rollout_id!r}", reason="unknown_rollout")
    return _detail(session, r)


async def _change(rollout_id: str, to: str, app: Any, offerer: RolloutOfferer) -> RolloutDetail:
    def run() -> RolloutDetail:
        with app.writer.begin() as session:
            return _detail(session, set_state(session, rollout_id, to,
                                              now_ms=app.clock.now_ms()))
    try:
        out = await asyncio.to_thread(run)
    except RolloutError as err:
        raise _problem(err) from err
    offerer.metrics.transitions.labels(state=to).inc()
    logger.info("rollout %s: %s", rollout_id, to)
    if to == "running":
        await offerer.tick()
    return out


_CHANGE: dict[int | str, dict[str, Any]] = {409: {"description": "not in a state that allows it"},
           404: {"description": "unknown rollout"}}


@router.post("/{rollout_id}/pause", summary="Stop offering (reports still count)",
             responses=_CHANGE)
async def pause_rollout(rollout_id: RolloutId, app: StateDep, offerer: OffererDep,
                        _: AdminRole) -> RolloutDetail:
    return await _change(rollout_id, "paused", app, offerer)


@router.post("/{rollout_id}/resume", summary="Offer again", responses=_CHANGE)
async def resume_rollout(rollout_id: RolloutId, app: StateDep, offerer: OffererDep,
                         _: AdminRole) -> RolloutDetail:
    return await _change(rollout_id, "running", app, offerer)


@router.post("/{rollout_id}/abort", summary="End it; nothing more is offered",
             responses=_CHANGE)
async def abort_rollout(rollout_id: RolloutId, app: StateDep, offerer: OffererDep,
                        _: AdminRole) -> RolloutDetail:
    return await _change(rollout_id, "aborted", app, offerer)
