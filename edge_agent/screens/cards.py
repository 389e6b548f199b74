"""A promotion card's text, from the promotion the till holds now.

The card names a promotion by id; its name and discount come from the store's signed
promotion snapshot (``edge_agent.pos.cache.PromotionCache``), so the screen says what the
till charges. A promotion that is not in the snapshot, or not live at this time (its
validity, weekdays, month days or time of day, or not for this store), gives no card:
the screen skips it rather than advertise a discount the till would not give.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pricing import PromotionSnapshot

# Currencies without minor units (ISO 4217 exponent 0) among those a chain might use;
# every other one has two decimals.
ZERO_DECIMALS = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "HUF"})


def money(minor: int, currency: str) -> str:
    if currency in ZERO_DECIMALS:
        return f"{minor} {currency}"
    return f"{minor // 100}.{minor % 100:02d} {currency}"


def live(promotion: Any, *, local: dt.datetime, store_id: str) -> bool:
    """The promotion's conditions allow it at ``local`` (the store's time) here."""
    c = promotion.conditions
    now_ms = int(local.timestamp() * 1000)
    minute = local.hour * 60 + local.minute
    return ((c.valid_from_ms is None or c.valid_from_ms <= now_ms)
            and (c.valid_until_ms is None or now_ms < c.valid_until_ms)
            and (not c.weekdays or local.isoweekday() in c.weekdays)
            and (not c.month_days or local.day in c.month_days)
            and (c.time_from_min is None or c.time_from_min <= minute)
            and (c.time_until_min is None or minute < c.time_until_min)
            and (not c.stores or store_id in c.stores))


def offer(promotion: Any, currency: str) -> str:
    """What the promotion gives, in a few words."""
    new_price = getattr(promotion, "new_price", None)
    percent_bp = getattr(promotion, "percent_bp", 0)
    amount_off = getattr(promotion, "amount_off", 0)
    if new_price is not None:
        return f"now {money(new_price, currency)}"
    if percent_bp:
        return f"{percent_bp / 100:g}% off"
    if amount_off:
        return f"{money(amount_off, currency)} off"
    kind = promotion.kind
    if kind == "buy_x_get_y":
        free = promotion.get_percent_bp == 10_000
        return (f"buy {promotion.buy_qty}, get {promotion.get_qty} "
                + ("free" if free else f"at {promotion.get_percent_bp / 100:g}% off"))
    if kind == "bundle":
        return f"bundle for {money(promotion.price, currency)}"
    if kind == "gift":
        return "free gift"
    return ""


def card(snapshot: PromotionSnapshot | None, promotion_id: str, *, local: dt.datetime,
         store_id: str) -> tuple[dict[str, Any] | None, str]:
    """The card's promotion part, or None and why not (``no_snapshot``, ``unknown``,
    ``not_live``)."""
    if snapshot is None:
        return None, "no_snapshot"
    promotion = next((p for p in snapshot.promotions if p.id == promotion_id), None)
    if promotion is None:
        return None, "unknown"
    if not live(promotion, local=local, store_id=store_id):
        return None, "not_live"
    return {"promotion_id": promotion_id, "name": promotion.name or promotion_id,
            "offer": offer(promotion, snapshot.currency),
            "valid_until_ms": promotion.conditions.valid_until_ms,
            "snapshot_version": snapshot.version}, ""
