"""Commands to a store's agent or devices; results arrive on ``cmd-res`` via ingest.

Each command records who sent it (the token's name and role) and why; a sensitive one
(``protocols.commands``: opening a cash drawer, unlocking a cabinet door) needs a role of
``sensitive_command_roles`` and a stated reason (decision 0044). Both travel to the box
with the command, which logs them beside the result.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Path, Response
from sqlalchemy.orm import Session, sessionmaker

from cloud.api.deps import (
    COMMANDERS,
    AppState,
    Principal,
    PrincipalDep,
    ReadRole,
    SessionDep,
    StateDep,
)
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.schemas import CommandCreate, CommandPublic
from cloud.db.models import Command, Device, Store
from cloud.errors import PublishError
from protocols import topics
from protocols.codec import encode
from protocols.commands import is_sensitive
from protocols.ids import Id, uuid7
from protocols.messages import Command as CommandMsg
from protocols.messages import CommandSender

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


def _family(sessions: sessionmaker[Session], store_id: str, target: str) -> str | None:
    """The target's family: ``agent``, a known device's kind, or None (not seen yet)."""
    if target == "agent":
        return "agent"
    with sessions() as session:
        device = session.get(Device, (store_id, target))
        return None if device is None else device.kind


def _check_sender(app: AppState, who: Principal, body: CommandCreate, *,
                  store_id: str, family: str | None) -> str | None:
    """403 unless the role may send this command, 422 for a sensitive one without a
    reason; returns the stated reason (stripped; None when blank)."""
    reason = (body.reason or "").strip() or None
    if not is_sensitive(family, body.name):
        if who.role not in COMMANDERS:
            raise ApiProblem(403, f"role {who.role.value!r} may not send commands",
                             reason="forbidden")
        return reason
    allowed = app.settings.sensitive_command_roles
    what = f"{body.name!r} to {store_id}/{body.target}"
    if who.role not in allowed:
        logger.warning("store %s: sensitive command %s to %s refused: role %s (%s)",
                       store_id, body.name, body.target, who.role.value, who.name)
        names = ", ".join(sorted(r.value for r in allowed)) or "none (configuration)"
        raise ApiProblem(403, f"{what} is a sensitive command; role {who.role.value!r} may "
                         f"not send it (allowed roles: {names})",
                         reason="sensitive_command_forbidden")
    if reason is None:
        logger.warning("store %s: sensitive command %s to %s refused: no reason (%s)",
                       store_id, body.name, body.target, who.name)
        raise ApiProblem(422, f"{what} is a sensitive command: state why in 'reason'",
                         reason="reason_required")
    return reason


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
               422: {"description": "a sensitive command without a reason"},
               503: {"description": "the broker did not take the command"}},
)
async def create_command(
    store_id: StoreId, body: CommandCreate, app: StateDep, who: PrincipalDep,
    response: Response,
) -> CommandPublic:
    family = await asyncio.to_thread(_family, app.reader, store_id, body.target)
    reason = _check_sender(app, who, body, store_id=store_id, family=family)
    now = app.clock.now_ms()
    cmd = Command(
        cmd_id=uuid7(now), store_id=store_id, target=body.target, name=body.name,
        args=body.args, expires_at=now + body.ttl_s * 1000, created_ms=now, status="pending",
        result=None, error=None, completed_ms=None,
        sender=who.name, sender_role=who.role.value, reason=reason,
    )
    if not await asyncio.to_thread(_create, app.writer, cmd):
        raise ApiProblem(404, f"no store {store_id!r}")
    msg = CommandMsg(cmd_id=cmd.cmd_id, name=cmd.name, args=cmd.args,
                     expires_at=cmd.expires_at, ts=now,
                     sender=CommandSender(name=who.name, role=who.role.value), reason=reason)
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
