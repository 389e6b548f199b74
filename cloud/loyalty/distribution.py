"""Referral ("invite a friend") and two-level distribution commissions.

* Referral: when a member joins with ``referred_by=A``, both get a coupon of the
  programme's referral campaign (idempotent: ``referral:<new member>``).
* Distribution: a sale attributed to distributor B (``shared_by``) earns B a level-1
  commission; if B was recruited by distributor A, A earns a level-2 invitation
  reward. Both are held ``pending`` until the sale's return window closes;
  ``settle_commissions(now)`` (a Clock-driven job) credits them as ``commission``
  points, and a return before that reverses them (after it, the credited points are
  taken back from the beneficiary's ledger).

Partial returns (decision 0015) reverse each commission -- the direct one and the
invitation reward alike -- in proportion to the refunded part of what the buyer paid,
on running totals so that rounding never drifts::

    refunded   = min(base_paid, refunded so far + this refund's paid)
    reversed   = points                                 if refunded == base_paid
               = ceil(points * refunded / base_paid)    otherwise
    this time  = reversed - reversed so far

Rounding the reversal *up* keeps what the beneficiary keeps at or below the rate on
what the buyer kept (the commission itself was floored for the same reason); because
the target is recomputed from the running total, any number of partial returns
reverses exactly what one return of the same total would, and never more than was
earned. A refund without ``paid`` (older tills), or a commission without a base (rows
from before this rule), reverses everything, as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import Campaign, Commission, CommissionReversal, Coupon, Member
from cloud.loyalty import points
from cloud.loyalty.coupons import issue_coupon
from cloud.loyalty.program import LoyaltyProgram
from protocols.ids import uuid7

logger = logging.getLogger(__name__)


def reward_referral(
    session: Session, member: Member, *, program: LoyaltyProgram, now_ms: int
) -> list[Coupon]:
    """Coupons for the new member and whoever referred them (none without a campaign)."""
    if member.referred_by is None:
        return []
    campaign = session.get(Campaign, program.referral_campaign)
    if campaign is None or not campaign.active:
        logger.warning("referral by %s: no active campaign %r; no coupons issued",
                       member.referred_by, program.referral_campaign)
        return []
    key = f"referral:{member.member_id}"
    return [issue_coupon(session, campaign.campaign_id, who, source_key=key, now_ms=now_ms)[0]
            for who in (member.member_id, member.referred_by)]


def record_sale(
    session: Session,
    *,
    sale_id: str,
    shared_by: str,
    buyer_id: str | None,
    paid: int,
    now_ms: int,
    program: LoyaltyProgram,
) -> list[Commission]:
    """New pending commissions for a sale that ``shared_by`` brought in; a sale seen
    before returns none (idempotent by sale id)."""
    sharer = session.get(Member, shared_by)
    if sharer is None or not sharer.is_distributor or shared_by == buyer_id:
        return []
    levels: list[tuple[int, str, int]] = [(1, shared_by, program.commission_bp)]
    if sharer.recruited_by is not None:
        recruiter = session.get(Member, sharer.recruited_by)
        if recruiter is not None and recruiter.is_distributor:
            levels.append((2, recruiter.member_id, program.invitation_bp))
    out = []
    for level, beneficiary, bp in levels:
        amount = paid * bp // 10_000  # floored: never pay out more than the rate
        existing = session.scalar(select(Commission).where(
            Commission.sale_id == sale_id, Commission.beneficiary_id == beneficiary,
            Commission.level == level))
        if existing is not None or amount <= 0:
            continue
        row = Commission(id=uuid7(now_ms), sale_id=sale_id, beneficiary_id=beneficiary,
                         buyer_id=buyer_id, level=level, points=amount, status="pending",
                         created_ms=now_ms, settle_after_ms=now_ms + program.return_window_ms,
                         closed_ms=None, base_paid=paid, refunded_paid=0, reversed_points=0)
        session.add(row)
        out.append(row)
    session.flush()
    return out


def settle_commissions(session: Session, *, now_ms: int, program: LoyaltyProgram) -> int:
    """Credit every pending commission whose return window has closed; returns how many."""
    due = list(session.scalars(
        select(Commission).where(Commission.status == "pending",
                                 Commission.settle_after_ms <= now_ms)
        .order_by(Commission.settle_after_ms, Commission.id)
        .with_for_update(skip_locked=True)  # two schedulers never settle the same row
    ))
    for row in due:
        # What partial returns inside the window already reversed is never paid out.
        points.credit(session, row.beneficiary_id, row.points - row.reversed_points,
                      op_id=f"commission:{row.id}", now_ms=now_ms,
                      ttl_ms=program.points_ttl_ms, kind="commission")
        row.status = "settled"
        row.closed_ms = now_ms
    session.flush()
    return len(due)


@dataclass(frozen=True, slots=True)
class Reversal:
    """What one return did to one commission."""

    commission: Commission
    points: int
    """Points reversed by this return (cancelled if pending, taken back if settled)."""


def reversal_target(points_earned: int, base_paid: int | None, refunded_paid: int | None
                    ) -> tuple[int, int | None]:
    """(points reversed in all, refunded in all) for a running refunded total.

    ``refunded_paid`` None, or no base: everything. See the module docstring for the rule.
    """
    if base_paid is None or base_paid <= 0 or refunded_paid is None:
        return points_earned, base_paid
    refunded = min(base_paid, refunded_paid)
    if refunded == base_paid:
        return points_earned, refunded
    return -(-points_earned * refunded // base_paid), refunded  # ceil, in integers


def reverse_sale(session: Session, *, sale_id: str, now_ms: int, refund_id: str = "return",
                 refunded_paid: int | None = None) -> list[Reversal]:
    """A return of ``sale_id`` (``<store>/<sale event id>``; ``refund_id``: the refund
    event's, ``event_key``; ``refunded_paid``:
    what it paid back, None = the whole sale). Pending commissions shrink (cancelled when
    nothing is left), settled ones are taken back from the ledger, in proportion.
    Idempotent by ``refund_id``."""
    rows = list(session.scalars(select(Commission).where(
        Commission.sale_id == sale_id, Commission.status != "reversed")
        .order_by(Commission.level, Commission.id).with_for_update()))
    out = []
    for row in rows:
        if session.get(CommissionReversal, (row.id, refund_id)) is not None:
            continue  # this return was applied already (a redelivered event)
        so_far = row.refunded_paid or 0
        target, refunded = reversal_target(
            row.points, row.base_paid,
            None if refunded_paid is None else so_far + refunded_paid)
        delta = max(0, target - (row.reversed_points or 0))
        if row.status == "settled" and delta > 0:
            points.take_back(session, row.beneficiary_id, delta,
                             op_id=f"commission-reverse:{row.id}:{refund_id}",
                             now_ms=now_ms, from_op=f"commission:{row.id}")
        row.reversed_points = (row.reversed_points or 0) + delta
        row.refunded_paid = so_far if refunded is None else refunded
        if row.reversed_points >= row.points:
            row.status = "reversed"
            row.closed_ms = now_ms
        session.add(CommissionReversal(commission_id=row.id, refund_id=refund_id,
                                       refunded_paid=refunded_paid or 0, points=delta,
                                       created_ms=now_ms))
        out.append(Reversal(commission=row, points=delta))
    session.flush()
    return out


def commissions_of(session: Session, member_id: str) -> list[Commission]:
    return list(session.scalars(select(Commission).where(
        Commission.beneficiary_id == member_id).order_by(Commission.created_ms, Commission.id)))
