"""Commands to a store's agent or devices; results arrive on ``cmd-res`` via ingest."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Path, Response
from sqlalchemy.orm import Session, sessionmaker

from cloud.api.deps import CommandRole, PrincipalDep, ReadRole, SessionDep, StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.schemas import CommandCreate, CommandPublic
from cloud.db.models import Command, Store
from cloud.errors import PublishError
from protocols import topics
from protocols.codec import encode
from protocols.ids import Id, uuid7
from protocols.messages import Command as CommandMsg

logger = logging.getLogger(__name__)

router = APIRouter(tags=["commands"], route_class=JsonRoute)

StoreId = Annotated[Id, Path(description="store id")]


def _public(cmd: Command, now_ms: int) -> CommandPublic:
    out = CommandPublic.model_validate(cmd)
    if cmd.status in ("pending", "undeliverable") and now_ms > cmd.expires_at:
        out = out.model_copy(update={"status": "expired"})
    return out


def _create(sessions: sessionmaker[Session], cmd: Command) -> bool:
    with sessions.begin() as session:
        if session.get(Store, cmd.store_id) is None:
            return False
        session.add(cmd)
    return True


def _set_status(sessions: sessionmaker[Session], cmd_id: str, status: str) -> None:
    with sessions.begin() as session:
        cmd = session.get(Command, cmd_id)
        if cmd is not None and cmd.status == "pending":
            cmd.status = status


@router.post(
    "/stores/{store_id}/commands",
    status_code=202,
    summary="Send a command; returns at once with its cmd_id (poll GET /commands/{cmd_id})",
    responses={404: {"description": "unknown store"},
               503: {"description": "the broker did not take the command"}},
)
async def create_command(
    store_id: StoreId, body: CommandCreate, app: StateDep, _: CommandRole, response: Response
) -> CommandPublic:
    now = app.clock.now_ms()
    cmd = Command(
        cmd_id=uuid7(now), store_id=store_id, target=body.target, name=body.name,
        args=body.args, expires_at=now + body.ttl_s * 1000, created_ms=now, status="pending",
        result=None, error=None, completed_ms=None,
    )
    if not await asyncio.to_thread(_create, app.writer, cmd):
        raise ApiProblem(404, f"no store {store_id!r}")
    msg = CommandMsg(cmd_id=cmd.cmd_id, name=cmd.name, args=cmd.args,
                     expires_at=cmd.expires_at, ts=now)
    try:
        await app.publisher.publish(topics.cmd(store_id, body.target), encode(msg),
                                    qos=1, retain=False)
    except PublishError as err:
        app.metrics.publish_failures.labels(kind="command").inc()
        await asyncio.to_thread(_set_status, app.writer, cmd.cmd_id, "undeliverable")
        logger.error("store %s: command %s not published: %s", store_id, cmd.cmd_id, err)
        raise ApiProblem(503, f"command {cmd.cmd_id} not published: {err.detail}",
                         reason="publish_failed") from err
    app.metrics.published.labels(kind="command").inc()
    response.headers["Location"] = f"/api/v1/commands/{cmd.cmd_id}"
    return _public(cmd, now)


@router.get("/commands/{cmd_id}", summary="A command's status and result",
            responses={404: {"description": "unknown command"}})
def get_command(
    cmd_id: Annotated[Id, Path()], session: SessionDep, app: StateDep,
    _: ReadRole, who: PrincipalDep,
) -> CommandPublic:
    cmd = session.get(Command, cmd_id)
    if cmd is None:
        raise ApiProblem(404, f"no command {cmd_id!r}")
    who.check_store(session, cmd.store_id)
    return _public(cmd, app.clock.now_ms())
