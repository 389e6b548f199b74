"""Points and stored-value spends asked for by a store box (decision 0064).

    authorise(session, store_id=, spend=Spend(...), now_ms=)   # the box online: all or
                                                                # nothing, or refused
    settle(session, store_id=, spend=Spend(...), now_ms=)      # an offline spend's event:
                                                                # never refused
    release(session, store_id=, spend=Spend(...), now_ms=,     # its sale not recorded:
            points_ttl_ms=)                                     # what was taken, given back

A spend is named by ``(store, spend_id)`` (the box draws the id), recorded in
``member_spends`` and moved in the member's ledger with the same key (points op
``spend:<store>/<spend id>``, stored-value ref likewise), so a spend is applied once
whatever path brings it twice: a retried authorisation, or the offline event of a spend
whose authorisation succeeded but whose answer the box never got.

Online, a spend the balance cannot cover is refused (``InsufficientBalance``). Offline,
the box already handed the goods over, within its per-member cap: settlement takes
what the balance has and records the rest as the member's ``shortfall`` (status
``short``), counted and logged, never lost. What a member owes is subtracted from the
balance the snapshot shows (a negative balance at the store) and from what an online
authorisation may spend.

A spend authorised for a sale the box then could not record is released
(``member_spend_release`` event, decision 0068): what it took goes back to the member
(points as a ``reverse`` lot, as a refund gives them back; stored value as a ``refund``)
under the key ``release:<store>/<spend id>``, what it left owed is owed no more, and its
row says ``released``. A release that arrives before its offline spend records the spend
released with nothing taken, so the spend's event, arriving late, takes nothing. A
released spend id is not authorised again (``Conflict``): the box draws a new one.

The member's row is locked first (``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
SQLite), so two spends of the same member are decided one after the other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.db.models_members import MemberSpend
from cloud.loyalty import points, stored_value
from cloud.loyalty.errors import Conflict, InsufficientBalance
from cloud.loyalty.members import get_member
from protocols.member_spend import RELEASE_KIND, MemberSpendData, Unit
from protocols.messages import Event

logger = logging.getLogger(__name__)

UNITS: tuple[Unit, ...] = ("points", "stored_value")


class SpendMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.spends = Counter(
            "storefleet_member_spends", "Member spends asked for by store boxes, by mode "
            "(online, offline) and result (authorised, settled, short: settled with a "
            "shortfall the member owes, refused: online, the balance could not cover it, "
            "replayed: the same spend again, released: given back, its sale not recorded)",
            ["mode", "result"], registry=registry)


@dataclass(frozen=True, slots=True)
class Spend:
    spend_id: str
    member_id: str
    unit: Unit
    amount: int  # > 0: points, or stored value in minor units
    spent_ms: int  # the box's time


@dataclass(frozen=True, slots=True)
class SpendResult:
    spend_id: str
    member_id: str
    unit: Unit
    amount: int
    taken: int
    shortfall: int
    status: str  # authorised | settled | short | released
    balance: int  # the member's balance in ``unit`` after it, less what they owe
    replayed: bool = False


def ledger_key(store_id: str, spend_id: str, op: str = "spend") -> str:
    return f"{op}:{store_id}/{spend_id}"


def owed(session: Session, member_id: str, unit: Unit) -> int:
    """What the member owes in ``unit``: offline spends the balance did not cover."""
    total = session.scalar(select(func.coalesce(func.sum(MemberSpend.shortfall), 0)).where(
        MemberSpend.member_id == member_id, MemberSpend.unit == unit,
        MemberSpend.status == "short"))
    return int(total or 0)


def ledger_balance(session: Session, member_id: str, unit: Unit) -> int:
    if unit == "points":
        return points.balance(session, member_id)
    return stored_value.balance(session, member_id)


def balance(session: Session, member_id: str, unit: Unit) -> int:
    """The balance a store sees: the ledger's less what the member owes (may be < 0)."""
    return ledger_balance(session, member_id, unit) - owed(session, member_id, unit)


def _check(spend: Spend) -> None:
    if spend.unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}")
    if spend.amount <= 0:
        raise ValueError("a spend takes a positive amount")


def _same(row: MemberSpend, store_id: str, spend: Spend) -> None:
    if (row.member_id, row.unit, row.amount) != (spend.member_id, spend.unit, spend.amount):
        raise Conflict(f"spend {spend.spend_id!r} of store {store_id} was another spend "
                       f"({row.amount} {row.unit} of member {row.member_id})")


def _replay(session: Session, store_id: str, spend: Spend) -> SpendResult | None:
    row = session.get(MemberSpend, (store_id, spend.spend_id))
    if row is None:
        return None
    _same(row, store_id, spend)
    return _result(session, row, replayed=True)


def _result(session: Session, row: MemberSpend, *, replayed: bool) -> SpendResult:
    unit: Unit = "points" if row.unit == "points" else "stored_value"
    return SpendResult(spend_id=row.spend_id, member_id=row.member_id, unit=unit,
                       amount=row.amount, taken=row.taken, shortfall=row.shortfall,
                       status=row.status, balance=balance(session, row.member_id, unit),
                       replayed=replayed)


def _take(session: Session, store_id: str, spend: Spend, amount: int, *,
          now_ms: int) -> None:
    key = ledger_key(store_id, spend.spend_id)
    if spend.unit == "points":
        points.spend(session, spend.member_id, amount, op_id=key, now_ms=now_ms)
    else:
        stored_value.apply(session, spend.member_id, -amount, kind="spend", ref=key,
                           now_ms=now_ms)


def _record(session: Session, store_id: str, spend: Spend, *, taken: int, mode: str,
            status: str, now_ms: int) -> SpendResult:
    shortfall = spend.amount - taken
    session.add(MemberSpend(store_id=store_id, spend_id=spend.spend_id,
                            member_id=spend.member_id, unit=spend.unit, amount=spend.amount,
                            taken=taken, shortfall=shortfall, mode=mode, status=status,
                            spent_ms=spend.spent_ms, recorded_ms=now_ms))
    session.flush()  # the primary key is checked here, inside the caller's transaction
    return SpendResult(spend_id=spend.spend_id, member_id=spend.member_id, unit=spend.unit,
                       amount=spend.amount, taken=taken, shortfall=shortfall,
                       status=status,
                       balance=balance(session, spend.member_id, spend.unit))


def authorise(session: Session, *, store_id: str, spend: Spend, now_ms: int,
              metrics: SpendMetrics | None = None) -> SpendResult:
    """Spend all of it now, or ``InsufficientBalance`` (nothing recorded: the box may
    ask again with the same id once the member has loaded more)."""
    _check(spend)
    get_member(session, spend.member_id, for_update=True)
    if (done := _replay(session, store_id, spend)) is not None:
        if done.status == "released":  # its sale was not recorded: never spent again
            if metrics is not None:
                metrics.spends.labels(mode="online", result="refused").inc()
            raise Conflict(f"spend {spend.spend_id!r} of store {store_id} was released; "
                           "a new spend needs a new id")
        if metrics is not None:
            metrics.spends.labels(mode="online", result="replayed").inc()
        return done
    available = balance(session, spend.member_id, spend.unit)
    if available < spend.amount:
        if metrics is not None:
            metrics.spends.labels(mode="online", result="refused").inc()
        raise InsufficientBalance(spend.member_id, unit=spend.unit, wanted=spend.amount,
                                  available=max(available, 0))
    _take(session, store_id, spend, spend.amount, now_ms=now_ms)
    result = _record(session, store_id, spend, taken=spend.amount, mode="online",
                     status="authorised", now_ms=now_ms)
    if metrics is not None:
        metrics.spends.labels(mode="online", result="authorised").inc()
    return result


def settle(session: Session, *, store_id: str, spend: Spend, now_ms: int,
           metrics: SpendMetrics | None = None) -> SpendResult:
    """An offline spend the box already made: take what the balance has, record the rest
    as owed. The same spend again (or one already authorised online) changes nothing."""
    _check(spend)
    get_member(session, spend.member_id, for_update=True)
    if (done := _replay(session, store_id, spend)) is not None:
        if metrics is not None:
            metrics.spends.labels(mode="offline", result="replayed").inc()
        return done
    taken = min(spend.amount, max(0, balance(session, spend.member_id, spend.unit)))
    if taken:
        try:
            _take(session, store_id, spend, taken, now_ms=now_ms)
        except InsufficientBalance as err:  # points expiring at this very moment
            logger.warning("store %s: spend %s: %s; recorded as owed", store_id,
                           spend.spend_id, err)
            taken = 0
    status = "settled" if taken == spend.amount else "short"
    result = _record(session, store_id, spend, taken=taken, mode="offline", status=status,
                     now_ms=now_ms)
    if metrics is not None:
        metrics.spends.labels(mode="offline", result=status).inc()
    if status == "short":
        logger.warning("store %s: offline spend %s of member %s: %d %s not covered, "
                       "recorded as owed", store_id, spend.spend_id, spend.member_id,
                       result.shortfall, spend.unit)
    return result


def release(session: Session, *, store_id: str, spend: Spend, now_ms: int,
            points_ttl_ms: int | None, metrics: SpendMetrics | None = None) -> SpendResult:
    """Give a spend back: its sale was not recorded. What it took returns to the member
    once and what it left owed is forgiven; released before it arrived, it takes nothing
    when it does. The same release again changes nothing."""
    _check(spend)
    get_member(session, spend.member_id, for_update=True)
    row = session.get(MemberSpend, (store_id, spend.spend_id))
    if row is None:  # an offline spend whose own event has not arrived yet
        mode = "offline"
        _record(session, store_id, spend, taken=0, mode=mode, status="released",
                now_ms=now_ms)
        row = session.get(MemberSpend, (store_id, spend.spend_id))
        assert row is not None  # recorded just now
        row.shortfall = 0
    else:
        _same(row, store_id, spend)
        mode = row.mode
        if row.status == "released":
            if metrics is not None:
                metrics.spends.labels(mode=mode, result="replayed").inc()
            return _result(session, row, replayed=True)
        key = ledger_key(store_id, spend.spend_id, "release")
        if row.taken and spend.unit == "points":
            points.credit(session, spend.member_id, row.taken, op_id=key, now_ms=now_ms,
                          ttl_ms=points_ttl_ms, kind="reverse")
        elif row.taken:
            stored_value.apply(session, spend.member_id, row.taken, kind="refund", ref=key,
                               now_ms=now_ms)
        row.status, row.shortfall = "released", 0
    session.flush()
    if metrics is not None:
        metrics.spends.labels(mode=mode, result="released").inc()
    logger.info("store %s: spend %s of member %s released: %d %s given back", store_id,
                spend.spend_id, spend.member_id, row.taken, spend.unit)
    return _result(session, row, replayed=False)


class SpendHook:
    """Ingest's post-commit hook for ``member_spend`` (settles each offline spend once,
    ``settle``) and ``member_spend_release`` (gives a spend back once, ``release``): both
    idempotent by store and spend id."""

    def __init__(self, metrics: SpendMetrics, *, points_ttl_ms: int | None = None) -> None:
        self.metrics = metrics
        self.points_ttl_ms = points_ttl_ms

    def __call__(self, session: Session, event: Event, now_ms: int) -> None:
        try:
            data = MemberSpendData.model_validate(event.data)
        except ValidationError as err:
            raise ValueError(f"bad {event.kind} data: {err.errors()[0]['msg']}") from err
        spend = Spend(spend_id=data.spend_id, member_id=data.member_id, unit=data.unit,
                      amount=data.amount, spent_ms=data.spent_ms)
        if event.kind == RELEASE_KIND:
            release(session, store_id=event.store_id, spend=spend, now_ms=now_ms,
                    points_ttl_ms=self.points_ttl_ms, metrics=self.metrics)
        else:
            settle(session, store_id=event.store_id, spend=spend, now_ms=now_ms,
                   metrics=self.metrics)
