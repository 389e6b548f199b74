"""Stored-value accounts: a ledger and a balance that can never go negative.

The balance lives in ``stored_value_accounts`` next to its ledger so the database can
guard it twice inside the same transaction as the ledger row: the update is
conditional (``balance + delta >= 0``; on PostgreSQL the row lock makes a concurrent
spend wait and re-check), and a CHECK constraint refuses a negative balance whatever
code path writes it. ``ref`` is the idempotency key (``sale:<event id>``, a request id).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import StoredValueAccount, StoredValueEntry
from cloud.db.writes import dialect_insert
from cloud.loyalty.errors import Conflict, InsufficientBalance
from cloud.loyalty.members import get_member
from protocols.ids import uuid7

KINDS = frozenset({"load", "spend", "refund"})


@dataclass(frozen=True, slots=True)
class SvResult:
    entry_id: str
    kind: str
    amount: int
    balance: int
    replayed: bool = False


def balance(session: Session, member_id: str) -> int:
    account = session.get(StoredValueAccount, member_id)
    return account.balance if account is not None else 0


def ledger_sum(session: Session, member_id: str) -> int:
    total = session.scalar(select(func.coalesce(func.sum(StoredValueEntry.amount), 0)).where(
        StoredValueEntry.member_id == member_id))
    return int(total or 0)


def apply(
    session: Session, member_id: str, amount: int, *, kind: str, ref: str, now_ms: int
) -> SvResult:
    """Move ``amount`` (signed, minor units). Loads/refunds are positive, spends negative."""
    if kind not in KINDS or amount == 0 or (kind == "spend") != (amount < 0):
        raise ValueError("load/refund take a positive amount, spend a negative one")
    get_member(session, member_id)
    done = session.scalar(select(StoredValueEntry).where(
        StoredValueEntry.member_id == member_id, StoredValueEntry.ref == ref))
    if done is not None:
        if done.kind != kind or done.amount != amount:
            raise Conflict(f"ref {ref!r} was used for another stored-value operation")
        return SvResult(done.id, kind, amount, balance(session, member_id), replayed=True)
    session.execute(
        dialect_insert(session, StoredValueAccount)
        .values(member_id=member_id, balance=0, updated_ms=now_ms)
        .on_conflict_do_nothing(index_elements=["member_id"])
    )
    try:
        with session.begin_nested():
            row = session.execute(
                update(StoredValueAccount)
                .where(StoredValueAccount.member_id == member_id,
                       StoredValueAccount.balance + amount >= 0)
                .values(balance=StoredValueAccount.balance + amount, updated_ms=now_ms)
                .returning(StoredValueAccount.balance)
                .execution_options(synchronize_session=False)
            ).scalar_one_or_none()
    except sa_exc.IntegrityError as err:  # the CHECK constraint, if the WHERE was bypassed
        row = None
        cause: BaseException | None = err
    else:
        cause = None
    if row is None:
        available = session.scalar(select(StoredValueAccount.balance).where(
            StoredValueAccount.member_id == member_id)) or 0
        raise InsufficientBalance(member_id, unit="stored value", wanted=-amount,
                                  available=available) from cause
    entry = StoredValueEntry(id=uuid7(now_ms), member_id=member_id, kind=kind, amount=amount,
                             ref=ref, created_ms=now_ms)
    session.add(entry)
    session.flush()
    # The ORM's cached account row (if loaded) is stale after the UPDATE statement.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, StoredValueAccount):
            session.expire(obj)
    return SvResult(entry.id, kind, amount, int(row))
