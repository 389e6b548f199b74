"""Tiers from points earned over a rolling window, and their benefits as engine rules.

A tier's name is what the pricing engine sees as ``Member.tier``. Its benefits become
promotions in every published snapshot (``tier_promotions``), so the POS, the cart and
the cloud apply them with the same engine:

* ``discount_bp``  -> a ``TierPrice`` percent off every line for that tier;
* ``prices``       -> a ``TierPrice`` member price per sku;
* ``multiplier_bp``-> for each base ``PointsEarn`` rule, a tier variant earning
  ``points * multiplier_bp`` per ``per_minor * 10_000`` (the exact ratio, floored the
  same way) in the base rule's group, where the engine keeps the best rule only.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import PointsEntry, Tier
from pricing import Conditions, PointsEarn, Promotion, Scope, TierPrice


def earned_in_window(session: Session, member_id: str, *, now_ms: int, window_ms: int) -> int:
    """Points earned (earn + commission, less earned points taken back) in
    ``(now - window, now]``."""
    total = session.scalar(
        select(func.coalesce(func.sum(PointsEntry.points), 0)).where(
            PointsEntry.member_id == member_id,
            PointsEntry.created_ms > now_ms - window_ms,
            PointsEntry.created_ms <= now_ms,
            or_(PointsEntry.kind.in_(("earn", "commission")),
                and_(PointsEntry.kind == "reverse", PointsEntry.points < 0)),
        )
    )
    return max(0, int(total or 0))


def list_tiers(session: Session) -> list[Tier]:
    return list(session.scalars(select(Tier).order_by(Tier.min_points, Tier.name)))


def tier_for_points(tiers: Sequence[Tier], earned: int) -> str | None:
    best: Tier | None = None
    for tier in tiers:
        if tier.min_points <= earned and (best is None or tier.min_points >= best.min_points):
            best = tier
    return best.name if best is not None else None


def member_tier(session: Session, member_id: str, *, now_ms: int, window_ms: int) -> str | None:
    earned = earned_in_window(session, member_id, now_ms=now_ms, window_ms=window_ms)
    return tier_for_points(list_tiers(session), earned)


def tier_promotions(tiers: Sequence[Tier], base: Sequence[Promotion]) -> list[Promotion]:
    """Engine rules for the tiers' benefits; ``base`` = the other promotions published."""
    out: list[Promotion] = []
    earn_rules = [p for p in base if isinstance(p, PointsEarn) and not p.conditions.tiers]
    for tier in tiers:
        only = Conditions(tiers=(tier.name,))
        if tier.discount_bp > 0:
            out.append(TierPrice(id=f"tier-{tier.name}-discount", name=f"{tier.name} discount",
                                 scope=Scope(), percent_bp=tier.discount_bp, conditions=only))
        for sku, price in sorted(tier.prices.items()):
            out.append(TierPrice(id=f"tier-{tier.name}-price-{sku}",
                                 name=f"{tier.name} price", scope=Scope(skus=(sku,)),
                                 new_price=int(price), conditions=only))
        if tier.multiplier_bp != 10_000:
            for rule in earn_rules:
                out.append(rule.model_copy(update={
                    "id": f"tier-{tier.name}-{rule.id}",
                    "group": rule.group or rule.id,
                    "points": rule.points * tier.multiplier_bp,
                    "per_minor": rule.per_minor * 10_000,
                    "conditions": rule.conditions.model_copy(update={"tiers": (tier.name,)}),
                }))
    return out
