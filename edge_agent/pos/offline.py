"""The offline policy of the till: what it may do while the cloud is unreachable.

- **Earning** is priced as usual and sent with the sale marked ``points_pending``; the
  cloud credits it when the sale arrives (loyalty's ingest hook), never the till.
- **Single-use coupons** are redeemable offline only from code ranges the cloud
  pre-allocated to this store (``RangeCache``); each code once per store (the ledger's
  primary key). Other single-use codes need the cloud (``POST /coupons/{code}/redeem``);
  public engine codes (a promotion's ``code``, not single-use) work either way.
- **Spending** points and stored value offline is capped per card per store-local day
  (``OfflineLimits``), since the till cannot see what the card spent elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.pos.ledger import PosLedger

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class OfflineLimits:
    # Defaults: a day's worth of ordinary shopping; a chain sets its own in the config.
    points_per_card_per_day: int = 2_000
    stored_value_per_card_per_day: int = 5_000  # minor units


@dataclass(frozen=True, slots=True)
class Allowance:
    points: int
    stored_value: int
    capped: tuple[str, ...]  # what the cap reduced: "points", "stored_value"


def local_day(now_ms: int, utc_offset_min: int) -> int:
    return (now_ms + utc_offset_min * 60_000) // DAY_MS


class OfflineGuard:
    def __init__(self, ledger: PosLedger, *, limits: OfflineLimits) -> None:
        self._ledger = ledger
        self.limits = limits

    async def allowance(self, member_id: str, *, points: int, stored_value: int, day: int
                        ) -> Allowance:
        """How much of the requested spending an offline sale may use."""
        spent_points, spent_sv = await self._ledger.spent(member_id, day)
        left_points = max(0, self.limits.points_per_card_per_day - spent_points)
        left_sv = max(0, self.limits.stored_value_per_card_per_day - spent_sv)
        capped = tuple(name for name, want, left in (("points", points, left_points),
                                                     ("stored_value", stored_value, left_sv))
                       if want > left)
        return Allowance(min(points, left_points), min(stored_value, left_sv), capped)

    async def record(self, member_id: str, *, points: int, stored_value: int,
                     day: int) -> None:
        if points or stored_value:
            await self._ledger.add_spent(member_id, day, points=points,
                                         stored_value=stored_value)
