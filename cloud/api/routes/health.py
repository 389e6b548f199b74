"""Liveness/readiness and Prometheus metrics; neither needs a token."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text

from cloud.api.deps import StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.schemas import HealthPublic, TaskStatePublic
from cloud.supervise import TaskSupervisor

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"], route_class=JsonRoute)


def _ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


@router.get("/healthz", summary="Health: 200 when the database answers and every "
                                  "background task runs, 503 otherwise",
            response_model_exclude_none=True,
            responses={503: {"description": "database unreachable, or a background task "
                                            "(ingest, scheduler) crashed and is restarting"}})
async def healthz(app: StateDep, request: Request) -> HealthPublic:
    try:
        await asyncio.to_thread(_ping, app.engine)
    except Exception as err:  # any failure means "not healthy"; logged and counted below
        logger.warning("healthz: database check failed: %s", err)
        raise ApiProblem(503, "database unreachable", reason="unhealthy") from err
    tasks: TaskSupervisor | None = getattr(request.app.state, "tasks", None)
    states = tasks.states if tasks is not None else {}
    if down := {name: s for name, s in states.items() if s.state == "restarting"}:
        detail = "; ".join(f"task {name} crashed and is restarting ({s.restarts} restarts): "
                           f"{s.last_error}" for name, s in down.items())
        logger.warning("healthz: %s", detail)  # the crash itself was logged and counted
        raise ApiProblem(503, detail, reason="unhealthy")
    return HealthPublic(status="ok", database="ok", tasks={
        name: TaskStatePublic(state=s.state, restarts=s.restarts, last_error=s.last_error)
        for name, s in states.items()} or None)


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(app: StateDep) -> Response:
    return Response(generate_latest(app.registry), media_type=CONTENT_TYPE_LATEST)
