"""Apply decoded uplink messages to the database, inside the caller's transaction.

Every function here is safe to run twice on the same message (the broker redelivers
whatever was not acknowledged before a crash):

* events are inserted ``ON CONFLICT DO NOTHING`` on their id;
* births and deaths are ordered by ``bd_seq``: a death only counts when its
  ``bd_seq`` is at least the stored one, a birth only when it is newer than the
  stored session or the same session not yet dead;
* reported shadows only move forward in ``version``; telemetry keeps the newest ``ts``;
* a command result overwrites the command's result with the same values.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.db.models import Command, Device, Shadow, Store
from cloud.db.writes import insert_events, touch_stores, upsert_latest_telemetry
from cloud.ingest.decode import Inbound
from protocols.messages import Birth, CommandResult, Death, Event, ShadowReported, Telemetry

logger = logging.getLogger(__name__)

AGENT = "agent"  # telemetry of the box itself, not of a device


@dataclass
class Outcome:
    """What one applied batch did; metrics are counted from it after the commit."""

    events_stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    stale: int = 0
    stored_kinds: Counter[str] = field(default_factory=Counter)  # EVENT_KINDS: bounded
    # seconds from a live (not historical) event's time on the box to its storing
    live_delays_s: list[float] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        self.events_stored += other.events_stored
        self.stored_kinds.update(other.stored_kinds)
        self.live_delays_s.extend(other.live_delays_s)
        self.duplicates += other.duplicates
        self.rejected.update(other.rejected)
        self.stale += other.stale


def apply_batch(session: Session, items: list[Inbound], *, now_ms: int) -> Outcome:
    out = Outcome()
    # Keyed by (store, id): an event id is unique within its store only (decision 0026).
    events: dict[tuple[str, str], dict[str, Any]] = {}
    telemetry: dict[tuple[str, str, str], dict[str, Any]] = {}
    results: dict[str, tuple[str, CommandResult]] = {}  # cmd_id -> (store, its result)
    for item in items:
        msg = item.msg
        if isinstance(msg, Birth):
            out.stale += not apply_birth(session, item.store_id, msg, now_ms=now_ms)
        elif isinstance(msg, Death):
            out.stale += not apply_death(session, item.store_id, msg, now_ms=now_ms)
        elif isinstance(msg, Event):
            if (msg.store_id, msg.id) in events:
                out.duplicates += 1  # the same event twice in one batch
            else:
                events[msg.store_id, msg.id] = _event_row(msg, now_ms=now_ms)
        elif isinstance(msg, Telemetry):
            apply_telemetry(session, item.store_id, msg, now_ms=now_ms, latest=telemetry)
        elif isinstance(msg, ShadowReported):
            target = item.topic.target or "agent"
            out.stale += not apply_reported(session, item.store_id, target, msg, now_ms=now_ms)
        elif isinstance(msg, CommandResult):
            results[msg.cmd_id] = (item.store_id, msg)  # a redelivered one: the same values
    if results:
        out.rejected["unknown_cmd_id"] += len(results) - apply_command_results(session, results)
    if events:
        stores = {row["store_id"] for row in events.values()}
        for store_id in sorted(stores - touch_stores(session, stores, now_ms=now_ms)):
            _touch_store(session, store_id, now_ms=now_ms)  # a store seen the first time
        inserted = insert_events(session, list(events.values()))
        out.events_stored += len(inserted)
        out.stored_kinds.update(events[key]["kind"] for key in inserted)
        out.live_delays_s.extend(max(0, now_ms - events[key]["ts"]) / 1000
                                 for key in inserted if not events[key]["historical"])
        out.duplicates += len(events) - len(inserted)
    upsert_latest_telemetry(session, list(telemetry.values()))
    return out


def _event_row(msg: Event, *, now_ms: int) -> dict[str, Any]:
    return {
        "id": msg.id,
        "store_id": msg.store_id,
        "kind": msg.kind,
        "device_id": msg.device_id,
        "seq": msg.seq,
        "ts": msg.ts,
        "historical": msg.historical,
        "data": msg.data,
        "received_ms": now_ms,
    }


def _store_for_update(session: Session, store_id: str) -> Store:
    # FOR UPDATE: two ingest workers (shared subscription) must not interleave a
    # read-modify-write of the same store on PostgreSQL; SQLite ignores it (it
    # serialises writers with BEGIN IMMEDIATE anyway).
    store = session.get(Store, store_id, with_for_update=True)
    if store is None:
        store = Store(store_id=store_id, online=False)
        session.add(store)
    return store


def _touch_store(session: Session, store_id: str, *, now_ms: int) -> Store:
    store = _store_for_update(session, store_id)
    store.last_seen_ms = max(store.last_seen_ms or 0, now_ms)
    return store


def apply_birth(session: Session, store_id: str, msg: Birth, *, now_ms: int) -> bool:
    """Returns False for a stale birth (older session, or a session already dead)."""
    store = _touch_store(session, store_id, now_ms=now_ms)
    same_session_dead = msg.bd_seq == store.bd_seq and store.dead_bd_seq == msg.bd_seq
    if store.bd_seq is not None and (msg.bd_seq < store.bd_seq or same_session_dead):
        logger.info("store %s: ignoring stale birth bd_seq=%d (stored %d, dead %s)",
                    store_id, msg.bd_seq, store.bd_seq, store.dead_bd_seq)
        return False
    if store.bd_seq == msg.bd_seq and store.last_birth_ms == msg.ts and store.online:
        return True  # the same birth again (redelivered retained message): nothing new
    store.online = True
    store.bd_seq = msg.bd_seq
    store.agent_version = msg.agent_version
    store.last_birth_ms = msg.ts
    store.birth = msg.model_dump(mode="json")
    # A birth carries the whole device list: devices it does not name are gone.
    listed = {d.device_id for d in msg.devices}
    for dev in session.scalars(select(Device).where(Device.store_id == store_id)):
        if dev.device_id not in listed:
            dev.online = False
    for info in msg.devices:
        dev = session.get(Device, (store_id, info.device_id)) or _new_device(
            session, store_id, info.device_id
        )
        dev.kind = info.kind
        dev.online = info.online
        dev.model = info.model
        dev.fw = info.fw
        if info.last_seen is not None:
            dev.last_seen_ms = max(dev.last_seen_ms or 0, info.last_seen)
    return True


def _new_device(session: Session, store_id: str, device_id: str) -> Device:
    dev = Device(store_id=store_id, device_id=device_id)
    session.add(dev)
    return dev


def apply_death(session: Session, store_id: str, msg: Death, *, now_ms: int) -> bool:
    """Returns False for a stale death (of a session older than the stored one)."""
    store = _store_for_update(session, store_id)
    if store.bd_seq is not None and msg.bd_seq < store.bd_seq:
        logger.info("store %s: ignoring stale death bd_seq=%d (stored %d)",
                    store_id, msg.bd_seq, store.bd_seq)
        return False
    store.online = False
    store.bd_seq = msg.bd_seq
    store.dead_bd_seq = msg.bd_seq
    store.last_death_ms = msg.ts if msg.ts is not None else now_ms
    for dev in session.scalars(
        select(Device).where(Device.store_id == store_id, Device.online)
    ):
        dev.online = False
    return True


def apply_telemetry(
    session: Session,
    store_id: str,
    msg: Telemetry,
    *,
    now_ms: int,
    latest: dict[tuple[str, str, str], dict[str, Any]],
) -> None:
    _touch_store(session, store_id, now_ms=now_ms)
    if msg.device_id == AGENT:  # the box's own readings (outbox): latest values only, no
        _latest(store_id, msg, latest)  # device row (decision 0054)
        return
    newest = max(s.ts for s in msg.samples)
    dev = session.get(Device, (store_id, msg.device_id))
    if dev is None:
        dev = Device(store_id=store_id, device_id=msg.device_id, kind=msg.device_kind)
        session.add(dev)
    dev.online = True
    dev.last_seen_ms = max(dev.last_seen_ms or 0, newest)
    dev.health = {**(dev.health or {}), **_latest(store_id, msg, latest)}  # a new dict


def _latest(store_id: str, msg: Telemetry,
            latest: dict[tuple[str, str, str], dict[str, Any]]) -> dict[str, Any]:
    """Keep the newest sample per metric in ``latest``; returns the values that won."""
    values: dict[str, Any] = {}
    for sample in sorted(msg.samples, key=lambda s: s.ts):
        for metric, value in sample.values.items():
            key = (store_id, msg.device_id, metric)
            seen = latest.get(key)
            if seen is None or seen["ts"] <= sample.ts:
                latest[key] = {"store_id": store_id, "device_id": msg.device_id,
                               "metric": metric, "value": value, "ts": sample.ts}
                values[metric] = value
    return values


def apply_reported(
    session: Session, store_id: str, target: str, msg: ShadowReported, *, now_ms: int
) -> bool:
    shadow = session.get(Shadow, (store_id, target), with_for_update=True)
    if shadow is None:
        shadow = Shadow(store_id=store_id, target=target, desired_version=0, updated_ms=now_ms)
        session.add(shadow)
    elif shadow.reported_version is not None and msg.version < shadow.reported_version:
        return False
    shadow.reported = dict(msg.state)
    shadow.reported_version = msg.version
    shadow.updated_ms = now_ms
    return True


def apply_command_results(session: Session,
                          results: dict[str, tuple[str, CommandResult]]) -> int:
    """A batch's command results in two statements, however many (a fleet-wide command
    brings thousands, decision 0061): one read of which ``cmd_id`` exist for the store
    that answers, by primary key, then one executemany UPDATE by primary key, in
    ``cmd_id`` order (two workers lock rows in the same order). Returns how many matched
    a command of their store; the others are logged."""
    known = {(cmd_id, store_id) for cmd_id, store_id in session.execute(
        select(Command.cmd_id, Command.store_id).where(Command.cmd_id.in_(sorted(results))))}
    rows = []
    for cmd_id in sorted(results):
        store_id, msg = results[cmd_id]
        if (cmd_id, store_id) not in known:
            logger.warning("store %s: result for unknown command %s", store_id, cmd_id)
            continue
        rows.append({"cmd_id": cmd_id, "status": msg.status, "result": dict(msg.result),
                     "error": msg.error, "completed_ms": msg.ts})
    if rows:
        session.execute(update(Command), rows)  # ORM bulk UPDATE by primary key
    return len(rows)
