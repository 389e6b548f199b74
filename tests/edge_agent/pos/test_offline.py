"""The offline policy at the till: daily caps on points and stored value per card,
pending earning, and single-use coupons only from ranges pre-allocated to the store."""

from __future__ import annotations

from pathlib import Path

from edge_agent.pos.offline import OfflineLimits, local_day
from edge_agent.pos.sales import Tenders
from pricing import Member
from tests.edge_agent.pos.test_sales import STORE, lines, till

DAY_S = 86_400
RANGE = {"range_id": "rng-1", "store_id": STORE, "engine_code": "CMP-welcome",
         "prefix": "RABCDEFGH-", "first": 1, "count": 20,
         "expires_ms": 1_767_225_600_000 + 7 * DAY_S * 1000, "allocated_ms": 0}


async def test_offline_spending_is_capped_per_card_per_day(tmp_path: Path) -> None:
    member = Member(id="m-cap", currency="EUR", points_balance=10_000,
                    stored_value_balance=10_000)
    limits = OfflineLimits(points_per_card_per_day=500, stored_value_per_card_per_day=300)
    async with till(tmp_path, limits=limits) as t:
        # Online: no cap (the cloud sees the balance).
        online = await t.pos.sell(lines(("coffee", 2)), member=member,
                                  tenders=Tenders(points=800))
        assert online.priced.points_used == 800 and online.capped == ()
        t.online[0] = False
        first = await t.pos.sell(lines(("coffee", 2)), member=member,
                                 tenders=Tenders(points=800, stored_value=200))
        assert first.offline and first.capped == ("points",)
        assert (first.priced.points_used, first.priced.stored_value) == (500, 200)
        second = await t.pos.sell(lines(("coffee", 1)), member=member,
                                  tenders=Tenders(points=100, stored_value=200))
        assert (second.priced.points_used, second.priced.stored_value) == (0, 100)
        assert second.capped == ("points", "stored_value")
        # Another card is not affected; the next store-local day starts afresh.
        other = Member(id="m-other", currency="EUR", points_balance=1_000)
        assert (await t.pos.sell(lines(("coffee", 1)), member=other,
                                 tenders=Tenders(points=300))).priced.points_used == 300
        t.clock.advance(DAY_S)
        third = await t.pos.sell(lines(("coffee", 2)), member=member,
                                 tenders=Tenders(points=400))
        assert third.priced.points_used == 400 and third.capped == ()
        sample = t.registry.get_sample_value
        assert sample("storefleet_pos_offline_capped_total", {"what": "points"}) == 2
        assert sample("storefleet_pos_sales_total", {"mode": "offline"}) == 4
        # Earning offline goes to the cloud as pending; the event says so.
        sale = next(e for e in t.events("sale") if e.id == first.sale_id)
        assert sale.data["offline"] and sale.data["points_pending"]
        assert sale.data["totals"]["points_earned"] == first.priced.points_earned > 0


def test_local_day_uses_the_store_offset() -> None:
    midnight_utc = 1_767_225_600_000
    assert local_day(midnight_utc - 1, 0) + 1 == local_day(midnight_utc, 0)
    assert local_day(midnight_utc - 1, 60) == local_day(midnight_utc, 0)  # 01:00 local


async def test_single_use_coupons_offline_only_from_the_store_ranges(tmp_path: Path) -> None:
    async with till(tmp_path, ranges=[RANGE]) as t:
        t.online[0] = False
        code = "RABCDEFGH-000005"
        sale = await t.pos.sell(lines(("bread", 1)), coupons=[code, "MEMBER-XYZ"])
        assert sale.refused_coupons == {"MEMBER-XYZ": "needs_cloud"}
        assert sale.priced.total == 350 - 50  # the range's engine coupon applied
        [redeemed] = t.events("coupon_redeemed")
        assert redeemed.data == {"source": "range", "code": code, "range_id": "rng-1",
                                 "engine_code": "CMP-welcome", "sale_id": sale.sale_id,
                                 "offline": True}
        again = await t.pos.sell(lines(("bread", 1)), coupons=[code])
        assert again.refused_coupons == {code: "already_used"} and again.priced.total == 350
        outside = await t.pos.sell(lines(("bread", 1)), coupons=["RABCDEFGH-000021"])
        assert outside.refused_coupons == {"RABCDEFGH-000021": "needs_cloud"}
        # A public engine code is not single-use: it works offline.
        public = await t.pos.sell(lines(("bread", 1)), coupons=["CMP-welcome"])
        assert public.refused_coupons == {} and public.priced.total == 300
        # Expired ranges are refused.
        t.clock.advance(8 * DAY_S)
        late = await t.pos.sell(lines(("bread", 1)), coupons=["RABCDEFGH-000006"])
        assert late.refused_coupons == {"RABCDEFGH-000006": "needs_cloud"}
        assert len(t.events("coupon_redeemed")) == 1
        assert t.registry.get_sample_value("storefleet_pos_refused_total",
                                           {"reason": "coupon_already_used"}) == 1
