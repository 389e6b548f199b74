"""Liveness/readiness and Prometheus metrics; neither needs a token."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text

from cloud.api.deps import StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.schemas import HealthPublic

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"], route_class=JsonRoute)


def _ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


@router.get("/healthz", summary="Health: 200 when the database answers, 503 otherwise",
            responses={503: {"description": "database unreachable"}})
async def healthz(app: StateDep) -> HealthPublic:
    try:
        await asyncio.to_thread(_ping, app.engine)
    except Exception as err:  # any failure means "not healthy"; logged and counted below
        logger.warning("healthz: database check failed: %s", err)
        raise ApiProblem(503, "database unreachable", reason="unhealthy") from err
    return HealthPublic(status="ok", database="ok")


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(app: StateDep) -> Response:
    return Response(generate_latest(app.registry), media_type=CONTENT_TYPE_LATEST)
