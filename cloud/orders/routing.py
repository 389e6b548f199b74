"""Which store fulfils an online order: the nearest one that has every line in stock.

Distance is the haversine great-circle distance on a spherical Earth (mean radius
6 371 008.8 m, IUGG): within 0.5 % of the ellipsoid, far below what separates two
stores of a chain. Ties (same distance) go to the lower store id, so routing is
deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.db.models_orders import StockLevel, StoreLocation

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean Earth radius


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class Candidate:
    store_id: str
    distance_m: float
    in_stock: bool


def candidates(session: Session, need: Mapping[str, int], *, lat: float,
               lon: float) -> list[Candidate]:
    """Every store accepting orders, nearest first, with whether it has all of ``need``."""
    stores = session.scalars(select(StoreLocation).where(StoreLocation.accepts_orders)).all()
    if not stores:
        return []
    have: dict[tuple[str, str], int] = {
        (row.store_id, row.sku): row.qty
        for row in session.scalars(select(StockLevel).where(StockLevel.sku.in_(list(need))))
    }
    out = [
        Candidate(
            s.store_id,
            haversine_m(lat, lon, s.lat, s.lon),
            all(have.get((s.store_id, sku), 0) >= qty for sku, qty in need.items()),
        )
        for s in stores
    ]
    out.sort(key=lambda c: (c.distance_m, c.store_id))
    return out


def reserve(session: Session, store_id: str, need: Mapping[str, int], *, now_ms: int) -> bool:
    """Take ``need`` from the store's stock, all or nothing (in a savepoint).

    The conditional ``UPDATE ... WHERE qty >= n`` is what makes two concurrent orders
    unable to sell the last unit twice (PostgreSQL re-checks the row after the other
    transaction commits; SQLite writers are serialised by ``BEGIN IMMEDIATE``)."""
    nested = session.begin_nested()
    for sku, qty in sorted(need.items()):
        result = session.execute(
            update(StockLevel)
            .where(StockLevel.store_id == store_id, StockLevel.sku == sku,
                   StockLevel.qty >= qty)
            .values(qty=StockLevel.qty - qty, updated_ms=now_ms)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            nested.rollback()
            return False
    nested.commit()
    return True


def release(session: Session, store_id: str, lines: Sequence[Mapping[str, object]], *,
            now_ms: int) -> None:
    """Give a cancelled order's units back to the store's stock."""
    for line in lines:
        sku, qty = str(line["sku"]), int(line["qty"])  # type: ignore[call-overload]
        session.execute(
            update(StockLevel)
            .where(StockLevel.store_id == store_id, StockLevel.sku == sku)
            .values(qty=StockLevel.qty + qty, updated_ms=now_ms)
        )
