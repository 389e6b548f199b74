"""Commands to a store's agent or devices; results arrive on ``cmd-res`` via ingest.

Each command records who sent it (the token's name and role) and why; a sensitive one
(``protocols.commands``: opening a cash drawer, unlocking a cabinet door) needs a role of
``sensitive_command_roles`` and a stated reason (decision 0044). Both travel to the box
with the command, which logs them beside the result.

A fleet-wide command (``POST /fleet/commands``: every store, or stores, regions and
groups) is one request that makes one command per store, published pipelined, with
``GET /fleet/commands/{id}`` counting its results and ``.../failures`` paging the ones
not ok (``cloud.commands``). Both POSTs take an ``Idempotency-Key`` header: a retry with
the same key answers the first request's command or fan-out (decision 0061).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
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
from cloud.api.paging import NEXT_HEADERS, Cursor, Limit, cut, decode_cursor, set_next
from cloud.api.problems import ApiProblem
from cloud.api.schemas import CommandCreate, CommandPublic
from cloud.commands import (
    CommandError,
    FanoutCreate,
    FanoutPublic,
    Sender,
    create_fanout,
    failures_page,
    mark_undeliverable,
    progress,
    valid_key,
)
from cloud.commands.idempotency import KEY_MAX, check_same_command, find_command
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
FanoutId = Annotated[Id, Path(description="fan-out id")]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=KEY_MAX,
    description="a retry with the same key (per token) answers the first request's "
    "command or fan-out instead of sending another")]
FAILURES = "fanout-failures"  # the failures listing's cursor name


def _public(cmd: Command, now_ms: int) -> CommandPublic:
    out = CommandPublic.model_validate(cmd)
    if cmd.status in ("pending", "undeliverable") and now_ms > cmd.expires_at:
        out = out.model_copy(update={"status": "expired"})
    return out


def _problem(err: CommandError) -> ApiProblem:
    return ApiProblem(err.status, err.detail, reason=err.reason)


def _key(key: str | None) -> str | None:
    try:
        return valid_key(key)
    except CommandError as err:
        raise _problem(err) from err


def _create(sessions: sessionmaker[Session], cmd: Command,
            key: str | None) -> tuple[Command | None, bool]:
    """(the command, new): the one stored now, or an earlier request's with the same
    ``key`` (new False); (None, False) for an unknown store."""
    def earlier() -> Command | None:
        assert key is not None and cmd.sender is not None
        with sessions() as session:
            found = find_command(session, cmd.sender, key)
            return None if found is None else check_same_command(
                found, key, store_id=cmd.store_id, target=cmd.target, name=cmd.name,
                args=cmd.args)

    if key is not None and (found := earlier()) is not None:
        return found, False
    try:
        with sessions.begin() as session:
            if session.get(Store, cmd.store_id) is None:
                return None, False
            cmd.idempotency_key = key
            session.add(cmd)
    except IntegrityError:
        if key is None or (found := earlier()) is None:
            raise
        return found, False  # a racing request with the same key stored it first
    return cmd, True


def _family(sessions: sessionmaker[Session], store_id: str, target: str) -> str | None:
    """The target's family: ``agent``, a known device's kind, or None (not seen yet)."""
    if target == "agent":
        return "agent"
    with sessions() as session:
        device = session.get(Device, (store_id, target))
        return None if device is None else device.kind


def _check_sender(app: AppState, who: Principal, *, name: str, target: str,
                  reason: str | None, where: str, family: str | None) -> str | None:
    """403 unless the role may send this command, 422 for a sensitive one without a
    reason; returns the stated reason (stripped; None when blank)."""
    reason = (reason or "").strip() or None
    if not is_sensitive(family, name):
        if who.role not in COMMANDERS:
            raise ApiProblem(403, f"role {who.role.value!r} may not send commands",
                             reason="forbidden")
        return reason
    allowed = app.settings.sensitive_command_roles
    what = f"{name!r} to {where}/{target}"
    if who.role not in allowed:
        logger.warning("%s: sensitive command %s to %s refused: role %s (%s)",
                       where, name, target, who.role.value, who.name)
        names = ", ".join(sorted(r.value for r in allowed)) or "none (configuration)"
        raise ApiProblem(403, f"{what} is a sensitive command; role {who.role.value!r} may "
                         f"not send it (allowed roles: {names})",
                         reason="sensitive_command_forbidden")
    if reason is None:
        logger.warning("%s: sensitive command %s to %s refused: no reason (%s)",
                       where, name, target, who.name)
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
    response: Response, idempotency_key: IdempotencyKey = None,
) -> CommandPublic:
    key = _key(idempotency_key)
    family = await asyncio.to_thread(_family, app.reader, store_id, body.target)
    reason = _check_sender(app, who, name=body.name, target=body.target, reason=body.reason,
                           where=f"store {store_id}", family=family)
    now = app.clock.now_ms()
    cmd = Command(
        cmd_id=uuid7(now), store_id=store_id, target=body.target, name=body.name,
        args=body.args, expires_at=now + body.ttl_s * 1000, created_ms=now, status="pending",
        result=None, error=None, completed_ms=None,
        sender=who.name, sender_role=who.role.value, reason=reason,
    )
    try:
        stored, new = await asyncio.to_thread(_create, app.writer, cmd, key)
    except CommandError as err:
        raise _problem(err) from err
    if stored is None:
        raise ApiProblem(404, f"no store {store_id!r}")
    response.headers["Location"] = f"/api/v1/commands/{stored.cmd_id}"
    if not new:  # a retry: answered, not sent again
        return _public(stored, now)
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


# ---- fleet-wide commands (decision 0061) ------------------------------------------------


def _progress(app: AppState, fanout_id: str) -> FanoutPublic:
    with app.reader() as session:
        out = progress(session, fanout_id, now_ms=app.clock.now_ms())
    if out is None:
        raise ApiProblem(404, f"no fleet-wide command {fanout_id!r}")
    return out


@router.post(
    "/fleet/commands",
    status_code=202,
    summary="Send one command to every selected store (all, or stores, regions, groups); "
            "returns its fan-out id at once (follow GET /fleet/commands/{fanout_id})",
    responses={403: {"description": "a role that may not send it, or a selected store "
                                    "outside the token's scope"},
               404: {"description": "an unknown store named"},
               422: {"description": "an empty selection, a sensitive command without a "
                                    "reason, an Idempotency-Key used for another request"},
               503: {"description": "the broker took none of the commands"}},
)
async def create_fleet_command(
    body: FanoutCreate, app: StateDep, who: PrincipalDep, response: Response,
    idempotency_key: IdempotencyKey = None,
) -> FanoutPublic:
    key = _key(idempotency_key)
    # A device target is sensitive if its name is for any family: the stores' devices
    # of that id need not all be one kind (decision 0044's safe side).
    reason = _check_sender(app, who, name=body.name, target=body.target, reason=body.reason,
                           where="the fleet", family="agent" if body.target == "agent"
                           else None)
    sender = Sender(name=who.name, role=who.role.value, reason=reason)
    try:
        created = await asyncio.to_thread(create_fanout, app.writer, body, sender=sender,
                                          allowed=who.allowed_stores,
                                          now_ms=app.clock.now_ms(), key=key)
    except CommandError as err:
        raise _problem(err) from err
    response.headers["Location"] = f"/api/v1/fleet/commands/{created.fanout_id}"
    if created.new:
        not_taken = await app.publisher.publish_many(created.messages, qos=1, retain=False)
        app.metrics.published.labels(kind="command").inc(len(created.messages) - len(not_taken))
        if not_taken:
            app.metrics.publish_failures.labels(kind="command").inc(len(not_taken))
            await asyncio.to_thread(mark_undeliverable, app.writer,
                                    [created.cmd_ids[i] for i in not_taken])
            logger.error("fleet-wide %s %s: %d of %d commands not published",
                         body.name, created.fanout_id, len(not_taken), len(created.messages))
            if len(not_taken) == len(created.messages):
                raise ApiProblem(503, f"fleet-wide command {created.fanout_id}: the broker "
                                 f"took none of its {len(not_taken)} commands",
                                 reason="publish_failed",
                                 headers={"Location": response.headers["Location"]})
        logger.info("fleet-wide %s to %s: %d stores (%s, by %s)", body.name, body.target,
                    len(created.messages), created.fanout_id, who.name)
    return await asyncio.to_thread(_progress, app, created.fanout_id)


def _check_fanout_scope(app: AppState, who: Principal, fanout_id: str) -> None:
    """A scoped token reads only fan-outs whose every store is in its scope."""
    if who.chain_wide:
        return
    with app.reader() as session:
        allowed = who.allowed_stores(session) or frozenset()
        outside = session.scalars(select(Command.store_id).where(
            Command.fanout_id == fanout_id, Command.store_id.not_in(sorted(allowed)))
            .limit(1)).first()
    if outside is not None:
        raise ApiProblem(403, f"this {who.role.value} token is not valid for store "
                         f"{outside!r} of fleet-wide command {fanout_id}",
                         reason="forbidden_store")


@router.get("/fleet/commands/{fanout_id}",
            summary="A fleet-wide command's progress: its commands counted by state "
                    "(sent, ok, failed, expired)",
            responses={404: {"description": "unknown fan-out"}})
async def get_fleet_command(fanout_id: FanoutId, app: StateDep, _: ReadRole,
                            who: PrincipalDep) -> FanoutPublic:
    out = await asyncio.to_thread(_progress, app, fanout_id)
    await asyncio.to_thread(_check_fanout_scope, app, who, fanout_id)
    return out


@router.get("/fleet/commands/{fanout_id}/failures",
            summary="The commands of a fleet-wide command that did not end ok (failed, "
                    "expired), a page at a time in cmd_id order",
            responses={200: {"headers": NEXT_HEADERS},
                       404: {"description": "unknown fan-out"}})
async def list_fleet_failures(fanout_id: FanoutId, app: StateDep, _: ReadRole,
                              who: PrincipalDep, request: Request, response: Response,
                              limit: Limit = 100, cursor: Cursor = None
                              ) -> list[CommandPublic]:
    after = None if cursor is None else str(decode_cursor(cursor, FAILURES, (str,))[0])
    await asyncio.to_thread(_progress, app, fanout_id)  # 404 for an unknown one
    await asyncio.to_thread(_check_fanout_scope, app, who, fanout_id)
    now = app.clock.now_ms()

    def run() -> list[Command]:
        with app.reader() as session:
            return failures_page(session, fanout_id, now_ms=now, after=after, limit=limit)
    rows, next_cursor = cut(await asyncio.to_thread(run), limit, FAILURES,
                            lambda c: (c.cmd_id,))
    set_next(request, response, next_cursor)
    return [_public(c, now) for c in rows]
