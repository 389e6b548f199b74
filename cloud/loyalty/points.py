"""The append-only points ledger: earn, spend, expire, reverse, commission.

The sum of a member's rows is the balance. Positive rows are *lots* with an expiry;
every negative row names the lot it consumes, so "what is left of a lot" is the lot
plus its consumptions, and spending takes the nearest-expiring lots first.

Every operation has an ``op_id`` (idempotency key, e.g. ``earn:<store>/<sale event id>``):
the second call with the same id returns the first result and writes nothing.
Operations lock the member row first (``FOR UPDATE`` on PostgreSQL; SQLite writers
are serialised by ``BEGIN IMMEDIATE``), so two spends cannot both see the same lots.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import PointsEntry, PointsOp
from cloud.loyalty.errors import Conflict, InsufficientBalance
from cloud.loyalty.members import get_member
from protocols.ids import uuid7

LOT_KINDS = frozenset({"earn", "commission", "reverse"})


@dataclass(frozen=True, slots=True)
class Lot:
    lot_id: str
    expires_ms: int | None
    remaining: int


@dataclass(frozen=True, slots=True)
class OpResult:
    op_id: str
    kind: str
    points: int
    """Signed total the operation moved (negative for spend / expire / take-back)."""
    replayed: bool = False


def balance(session: Session, member_id: str) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(PointsEntry.points), 0)).where(
            PointsEntry.member_id == member_id)
    )
    return int(total or 0)


def lots(session: Session, member_id: str) -> list[Lot]:
    """Lots with points left, nearest expiry first (no expiry last), then oldest."""
    used: dict[str | None, int] = {
        lot: int(total or 0) for lot, total in session.execute(
            select(PointsEntry.lot_id, func.sum(PointsEntry.points))
            .where(PointsEntry.member_id == member_id, PointsEntry.lot_id.is_not(None))
            .group_by(PointsEntry.lot_id)
        ).all()
    }
    rows = session.execute(
        select(PointsEntry.id, PointsEntry.points, PointsEntry.expires_ms, PointsEntry.created_ms)
        .where(PointsEntry.member_id == member_id, PointsEntry.points > 0,
               PointsEntry.lot_id.is_(None))
    ).all()
    out = []
    for lot_id, points, expires_ms, created_ms in rows:
        left = points + used.get(lot_id, 0)
        if left > 0:
            out.append((expires_ms is None, expires_ms or 0, created_ms, lot_id, left))
    out.sort()
    return [Lot(lot_id=r[3], expires_ms=None if r[0] else r[1], remaining=r[4]) for r in out]


def _begin_op(
    session: Session, op_id: str, member_id: str, kind: str, *, now_ms: int
) -> OpResult | None:
    """Lock the member; return the earlier result when ``op_id`` was already applied."""
    get_member(session, member_id, for_update=True)
    done = session.get(PointsOp, op_id)
    if done is None:
        return None
    if done.member_id != member_id or done.kind != kind:
        raise Conflict(f"op_id {op_id!r} was used for another operation")
    return OpResult(op_id, kind, done.points, replayed=True)


def _finish(session: Session, op_id: str, member_id: str, kind: str, points: int,
            *, now_ms: int) -> OpResult:
    session.add(PointsOp(op_id=op_id, member_id=member_id, kind=kind, points=points,
                         created_ms=now_ms))
    session.flush()
    return OpResult(op_id, kind, points)


def credit(
    session: Session,
    member_id: str,
    points: int,
    *,
    op_id: str,
    now_ms: int,
    ttl_ms: int | None,
    kind: str = "earn",
) -> OpResult:
    """Add a lot of ``points`` (earn, commission, or points given back on a return)."""
    if points <= 0 or kind not in LOT_KINDS:
        raise ValueError("credit needs positive points and a lot kind")
    if (done := _begin_op(session, op_id, member_id, kind, now_ms=now_ms)) is not None:
        return done
    session.add(PointsEntry(id=uuid7(now_ms), op_id=op_id, member_id=member_id, kind=kind,
                            points=points, created_ms=now_ms,
                            expires_ms=None if ttl_ms is None else now_ms + ttl_ms))
    return _finish(session, op_id, member_id, kind, points, now_ms=now_ms)


def _consume(session: Session, member_id: str, order: Iterable[Lot], points: int, *,
             op_id: str, kind: str, now_ms: int) -> int:
    """Write consumption rows against ``order`` until ``points`` are taken; returns taken."""
    taken = 0
    for lot in order:
        if taken == points:
            break
        part = min(lot.remaining, points - taken)
        session.add(PointsEntry(id=uuid7(now_ms), op_id=op_id, member_id=member_id, kind=kind,
                                points=-part, created_ms=now_ms, expires_ms=None,
                                lot_id=lot.lot_id))
        taken += part
    return taken


def spend(session: Session, member_id: str, points: int, *, op_id: str,
          now_ms: int) -> OpResult:
    """Spend ``points``, nearest-expiring lots first; all or nothing."""
    if points <= 0:
        raise ValueError("spend needs positive points")
    if (done := _begin_op(session, op_id, member_id, "spend", now_ms=now_ms)) is not None:
        return done
    _expire_member(session, member_id, now_ms=now_ms)
    available = lots(session, member_id)
    have = sum(lot.remaining for lot in available)
    if have < points:
        raise InsufficientBalance(member_id, unit="points", wanted=points, available=have)
    _consume(session, member_id, available, points, op_id=op_id, kind="spend", now_ms=now_ms)
    return _finish(session, op_id, member_id, "spend", -points, now_ms=now_ms)


def take_back(session: Session, member_id: str, points: int, *, op_id: str, now_ms: int,
              from_op: str | None = None) -> OpResult:
    """Reverse earned points (a return): from the lots ``from_op`` created first, then
    nearest-expiry. Points already spent are not clawed into a negative balance: what
    cannot be taken is left (the result says how much was taken)."""
    if points <= 0:
        raise ValueError("take_back needs positive points")
    if (done := _begin_op(session, op_id, member_id, "reverse", now_ms=now_ms)) is not None:
        return done
    available = lots(session, member_id)
    if from_op is not None:
        own = set(session.scalars(select(PointsEntry.id).where(
            PointsEntry.op_id == from_op, PointsEntry.lot_id.is_(None))))
        available.sort(key=lambda lot: lot.lot_id not in own)  # stable: keeps expiry order
    taken = _consume(session, member_id, available, points, op_id=op_id, kind="reverse",
                     now_ms=now_ms)
    return _finish(session, op_id, member_id, "reverse", -taken, now_ms=now_ms)


def _expire_member(session: Session, member_id: str, *, now_ms: int) -> int:
    due = [lot for lot in lots(session, member_id)
           if lot.expires_ms is not None and lot.expires_ms <= now_ms]
    total = 0
    for lot in due:
        op_id = f"expire:{lot.lot_id}"  # one expiry per lot, ever
        if session.get(PointsOp, op_id) is not None:
            continue
        _consume(session, member_id, [lot], lot.remaining, op_id=op_id, kind="expire",
                 now_ms=now_ms)
        session.add(PointsOp(op_id=op_id, member_id=member_id, kind="expire",
                             points=-lot.remaining, created_ms=now_ms))
        total += lot.remaining
    session.flush()
    return total


def expire_due(session: Session, *, now_ms: int, member_id: str | None = None) -> int:
    """Expire what is left of every lot whose expiry has passed; returns points expired.

    Clock-driven job (``now_ms`` from the injected clock); safe to run any number of times.
    """
    stmt = select(PointsEntry.member_id).where(
        PointsEntry.points > 0, PointsEntry.lot_id.is_(None),
        PointsEntry.expires_ms.is_not(None), PointsEntry.expires_ms <= now_ms,
    ).distinct()
    if member_id is not None:
        stmt = stmt.where(PointsEntry.member_id == member_id)
    total = 0
    for mid in list(session.scalars(stmt)):
        get_member(session, mid, for_update=True)
        total += _expire_member(session, mid, now_ms=now_ms)
    return total
