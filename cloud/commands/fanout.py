"""A fleet-wide command: one request, one command per selected store (decision 0061).

    created = create_fanout(writer, body, sender=Sender(...), allowed=..., now_ms=...)
    not_taken = await publisher.publish_many(created.messages, qos=1, retain=False)
    mark_undeliverable(writer, [created.cmd_ids[i] for i in not_taken])
    progress(session, fanout_id, now_ms=...)      # counts: sent, ok, failed, expired

The selection is every store, or stores, regions and groups as content and rollouts
select them (``cloud.rollouts.targeting.stores_of``). One transaction inserts the
fan-out's row and every store's ``Command`` (one executemany INSERT), each with its own
``cmd_id`` (the box answers each on its own ``cmd-res``, and ingest stores the results in
bulk, ``cloud.ingest.apply.apply_command_results``). The messages go out pipelined
(``Publisher.publish_many``), not one awaited PUBACK each; those the broker did not
take are marked ``undeliverable`` in one UPDATE. Progress is a count by status over the
fan-out's index (``ix_commands_fanout``), never a read of every row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.commands.idempotency import CommandError, reused
from cloud.db.models import Command, CommandFanout, Store
from cloud.rollouts.errors import RolloutError
from cloud.rollouts.targeting import MAX_STORES, stores_of
from protocols import topics
from protocols.codec import encode
from protocols.commands import REASON_MAX
from protocols.ids import Id, uuid7
from protocols.messages import Command as CommandMsg
from protocols.messages import CommandSender

NAMES_MAX = 100  # regions or groups named in one request
FAILED = ("error", "unknown_command", "rejected", "undeliverable")
_CHUNK = 500  # ids per IN (...) list: far below SQLite's and PostgreSQL's parameter caps


class FanoutCreate(BaseModel):
    """``POST /fleet/commands``: a command and the stores it goes to."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Id = Field(examples=["ping"])
    args: dict[str, Any] = Field(default_factory=dict)
    target: Id = Field(default="agent", description='"agent" or a device id every '
                       "selected store has")
    # Longer than a single command's default: 5,000 boxes answer over minutes, not seconds.
    ttl_s: int = Field(default=300, ge=1, le=86_400)
    reason: str | None = Field(default=None, max_length=REASON_MAX,
                               description="why; required for a sensitive command")
    all_stores: bool = Field(default=False, alias="all", description="every store")
    stores: list[Id] = Field(default_factory=list, max_length=MAX_STORES)
    regions: list[Id] = Field(default_factory=list, max_length=NAMES_MAX)
    groups: list[Id] = Field(default_factory=list, max_length=NAMES_MAX)

    @model_validator(mode="after")
    def _one_selection(self) -> FanoutCreate:
        named = bool(self.stores or self.regions or self.groups)
        if self.all_stores == named:
            raise ValueError("select stores: give all: true, or stores, regions and/or "
                             "groups (not both)")
        return self

    def selection(self) -> dict[str, Any]:
        return {"all": self.all_stores, "stores": list(dict.fromkeys(self.stores)),
                "regions": sorted(set(self.regions)), "groups": sorted(set(self.groups))}


class FanoutCounts(BaseModel):
    sent: int = Field(description="published, no result yet, not expired")
    ok: int
    failed: int = Field(description="error, unknown_command, rejected or undeliverable")
    expired: int = Field(description="no result before expires_at, or the box found it "
                                     "expired")


class FanoutPublic(BaseModel):
    fanout_id: str
    name: str
    target: str
    args: dict[str, Any]
    selection: dict[str, Any]
    stores: int = Field(description="commands created: one per selected store")
    created_ms: int
    expires_at: int
    sender: str | None
    sender_role: str | None
    reason: str | None
    counts: FanoutCounts
    by_status: dict[str, int] = Field(description="the commands' stored statuses")
    done: bool = Field(description="every command has a result or has expired")


@dataclass(frozen=True, slots=True)
class Sender:
    name: str
    role: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class Created:
    fanout_id: str
    new: bool  # False: an earlier request with the same Idempotency-Key made it
    cmd_ids: list[str]
    messages: list[tuple[str, bytes]]  # (topic, payload), as cmd_ids


def _stores(session: Session, req: FanoutCreate,
            allowed: Callable[[Session], frozenset[str] | None]) -> list[str]:
    if req.all_stores:
        stores = list(session.scalars(select(Store.store_id).order_by(Store.store_id)))
    else:
        explicit = list(dict.fromkeys(req.stores))
        known = set(session.scalars(select(Store.store_id).where(Store.store_id.in_(explicit))))
        if missing := [s for s in explicit if s not in known]:
            raise CommandError(404, f"no store {', '.join(map(repr, missing[:5]))}"
                               + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""),
                               reason="unknown_store")
        try:
            stores = stores_of(session, stores=explicit, regions=req.regions,
                               groups=req.groups)
        except RolloutError as err:  # the shared selection's refusal, as ours
            raise CommandError(err.status, err.detail, reason=err.reason) from err
    if not stores:
        raise CommandError(422, "the selection reaches no store", reason="empty_selection")
    if len(stores) > MAX_STORES:
        raise CommandError(422, f"the selection reaches {len(stores)} stores, at most "
                           f"{MAX_STORES} per fleet-wide command", reason="too_many_stores")
    scope = allowed(session)
    if scope is not None and (outside := [s for s in stores if s not in scope]):
        raise CommandError(403, f"this token is not valid for {len(outside)} selected "
                           f"store(s), e.g. {outside[0]!r}", reason="forbidden_store")
    return stores


def _existing(session: Session, sender: str, key: str, req: FanoutCreate) -> Created | None:
    row = session.scalars(select(CommandFanout).where(
        CommandFanout.sender == sender, CommandFanout.idempotency_key == key)).one_or_none()
    if row is None:
        return None
    if (row.name, row.target, row.args, row.selection) != (req.name, req.target, req.args,
                                                           req.selection()):
        raise reused(key, f"fleet-wide {row.name} to {row.target}, fan-out {row.fanout_id}")
    return Created(fanout_id=row.fanout_id, new=False, cmd_ids=[], messages=[])


def create_fanout(sessions: sessionmaker[Session], req: FanoutCreate, *, sender: Sender,
                  allowed: Callable[[Session], frozenset[str] | None], now_ms: int,
                  key: str | None) -> Created:
    """Resolve the selection, insert the fan-out and its commands in one transaction and
    build each store's message. Blocking (database, 5,000 encodes): run it in a thread."""
    if key is not None:
        with sessions() as session:
            if (found := _existing(session, sender.name, key, req)) is not None:
                return found
    fanout_id = uuid7(now_ms)
    expires_at = now_ms + req.ttl_s * 1000
    try:
        with sessions.begin() as session:
            stores = _stores(session, req, allowed)
            session.add(CommandFanout(
                fanout_id=fanout_id, target=req.target, name=req.name, args=req.args,
                selection=req.selection(), stores=len(stores), expires_at=expires_at,
                created_ms=now_ms, sender=sender.name, sender_role=sender.role,
                reason=sender.reason, idempotency_key=key))
            session.flush()  # a racing request with the same key fails here, not later
            cmd_ids = [uuid7(now_ms) for _ in stores]
            session.execute(insert(Command), [
                {"cmd_id": cmd_id, "store_id": store_id, "target": req.target,
                 "name": req.name, "args": req.args, "expires_at": expires_at,
                 "created_ms": now_ms, "status": "pending", "result": None, "error": None,
                 "completed_ms": None, "sender": sender.name, "sender_role": sender.role,
                 "reason": sender.reason, "fanout_id": fanout_id, "idempotency_key": None}
                for cmd_id, store_id in zip(cmd_ids, stores, strict=True)])
    except IntegrityError:
        if key is None:
            raise
        with sessions() as session:  # the other request with this key won the race
            if (found := _existing(session, sender.name, key, req)) is None:
                raise
            return found
    who = CommandSender(name=sender.name, role=sender.role)
    messages = [(topics.cmd(store_id, req.target),
                 encode(CommandMsg(cmd_id=cmd_id, name=req.name, args=req.args,
                                   expires_at=expires_at, ts=now_ms, sender=who,
                                   reason=sender.reason)))
                for cmd_id, store_id in zip(cmd_ids, stores, strict=True)]
    return Created(fanout_id=fanout_id, new=True, cmd_ids=cmd_ids, messages=messages)


def mark_undeliverable(sessions: sessionmaker[Session], cmd_ids: list[str]) -> None:
    """The broker did not take these: ``undeliverable``, a few UPDATEs however many."""
    with sessions.begin() as session:
        for start in range(0, len(cmd_ids), _CHUNK):
            session.execute(update(Command)
                            .where(Command.cmd_id.in_(cmd_ids[start:start + _CHUNK]),
                                   Command.status == "pending")
                            .values(status="undeliverable"))


def progress(session: Session, fanout_id: str, *, now_ms: int) -> FanoutPublic | None:
    """The fan-out and its commands counted by status (one GROUP BY on its index)."""
    row = session.get(CommandFanout, fanout_id)
    if row is None:
        return None
    by_status: dict[str, int] = {status: int(n) for status, n in session.execute(
        select(Command.status, func.count()).where(Command.fanout_id == fanout_id)
        .group_by(Command.status))}
    pending = by_status.get("pending", 0)
    over = now_ms > row.expires_at  # every command of a fan-out expires at once
    counts = FanoutCounts(
        sent=0 if over else pending, ok=by_status.get("ok", 0),
        failed=sum(by_status.get(s, 0) for s in FAILED),
        expired=by_status.get("expired", 0) + (pending if over else 0))
    return FanoutPublic(
        fanout_id=row.fanout_id, name=row.name, target=row.target, args=row.args,
        selection=row.selection, stores=row.stores, created_ms=row.created_ms,
        expires_at=row.expires_at, sender=row.sender, sender_role=row.sender_role,
        reason=row.reason, counts=counts, by_status=by_status, done=counts.sent == 0)


def failures_page(session: Session, fanout_id: str, *, now_ms: int, after: str | None,
                  limit: int) -> list[Command]:
    """Up to ``limit + 1`` commands of the fan-out that did not end ``ok`` (expired ones
    included once past ``expires_at``), in ``cmd_id`` order after ``after``."""
    row = session.get(CommandFanout, fanout_id)
    if row is None:
        return []
    not_ok = ["ok"] if now_ms > row.expires_at else ["ok", "pending"]
    stmt = (select(Command).where(Command.fanout_id == fanout_id,
                                  Command.status.not_in(not_ok))
            .order_by(Command.cmd_id).limit(limit + 1))
    if after is not None:
        stmt = stmt.where(Command.cmd_id > after)
    return list(session.scalars(stmt))
