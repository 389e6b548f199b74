"""Money adds up at the till (issue 11): a sale records what its tenders collected
(``charged`` in the ``sale`` event), a sale whose price differs from what a payment
already charged is refused before anything is recorded, and of two single-use codes
for one coupon only the code that gave the discount is used up."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.loyalty.sale import SaleData
from edge_agent.pos.sales import ChargeMismatch, SaleRefused, Tenders
from pricing import Member
from tests.edge_agent.pos.test_offline import RANGE
from tests.edge_agent.pos.test_sales import lines, till

THRESHOLD_RANGE = {**RANGE, "range_id": "rng-2", "engine_code": "CMP-big",
                   "prefix": "RBIGSPEND-"}
PROMOS = [
    {"kind": "coupon", "id": "welcome", "code": "CMP-welcome", "amount_off": 50},
    {"kind": "coupon", "id": "big", "code": "CMP-big", "amount_off": 300, "min_spend": 5_000},
]


def _refused(t: object, reason: str) -> float:
    registry = t.registry  # type: ignore[attr-defined]
    return registry.get_sample_value("storefleet_pos_refused_total", {"reason": reason}) or 0.0


async def test_of_two_codes_of_one_coupon_only_the_one_that_applied_is_used(
        tmp_path: Path) -> None:
    async with till(tmp_path, promos=PROMOS, ranges=[RANGE, THRESHOLD_RANGE]) as t:
        first, second = "RABCDEFGH-000001", "RABCDEFGH-000002"
        below = "RBIGSPEND-000001"  # min spend 50.00 not met: gives nothing
        sale = await t.pos.sell(lines(("bread", 1)), coupons=[first, second, below])
        assert sale.priced.total == 350 - 50  # "50 off per basket" once
        assert await t.pos.ledger.code_used(first)
        assert not await t.pos.ledger.code_used(second)
        assert not await t.pos.ledger.code_used(below)
        [redeemed] = t.events("coupon_redeemed")
        assert redeemed.data["code"] == first
        assert sale.coupons_used == (first,)
        assert sale.refused_coupons == {second: "not_applied", below: "not_applied"}
        [event] = t.events("sale")
        assert event.data["coupons_used"] == [first]
        assert _refused(t, "coupon_not_applied") == 2
        # The codes that gave nothing stayed with the shopper: they work next time.
        again = await t.pos.sell(lines(("bread", 1)), coupons=[second])
        assert again.coupons_used == (second,) and again.priced.total == 300
        assert [e.data["code"] for e in t.events("coupon_redeemed")] == [first, second]


async def test_the_sale_event_says_what_the_tenders_charged(tmp_path: Path) -> None:
    member = Member(id="m-1", currency="EUR", points_balance=5_000, stored_value_balance=300)
    async with till(tmp_path) as t:
        card = await t.pos.sell(lines(("coffee", 1)), member=member,
                                tenders=Tenders(points=100, method="card"))
        cash = await t.pos.sell(lines(("bread", 1)),
                                tenders=Tenders(method="cash", cash_given=2_000))
        by_id = {e.id: e for e in t.events("sale")}
        card_data = by_id[card.sale_id].data
        # 8.99 less 100 points (1.00) tendered: the card is charged the rest
        assert card.priced.paid == 899 - 100 and card_data["charged"] == 799
        assert SaleData.model_validate(card_data).totals.paid == card_data["charged"]
        # 20.00 handed over, 3.50 kept: the change is not charged
        assert by_id[cash.sale_id].data["charged"] == 350 == cash.priced.paid


async def test_a_short_cash_tender_is_refused_and_nothing_recorded(tmp_path: Path) -> None:
    async with till(tmp_path) as t:
        with pytest.raises(SaleRefused) as err:
            await t.pos.sell(lines(("coffee", 1)),
                             tenders=Tenders(method="cash", cash_given=500))
        assert err.value.reason == "short_tender"
        assert t.events("sale") == [] and _refused(t, "short_tender") == 1


async def test_a_price_that_differs_from_the_payment_is_refused_before_recording(
        tmp_path: Path) -> None:
    """A cart's payment QR charged 3.00 (the coupon applied); the code was used at a lane
    meanwhile, so the sale would price 3.50: refused, nothing recorded or redeemed."""
    async with till(tmp_path, ranges=[RANGE]) as t:
        code = "RABCDEFGH-000003"
        lane = await t.pos.sell(lines(("milk", 1)), coupons=[code])
        assert lane.coupons_used == (code,)
        with pytest.raises(ChargeMismatch) as err:
            await t.pos.sell(lines(("bread", 1)), coupons=[code], sale_id="checkout-1",
                             tenders=Tenders(method="cart-pay", charged=300))
        assert (err.value.reason, err.value.charged, err.value.priced) == \
            ("charge_mismatch", 300, 350)
        assert err.value.refused_coupons == {code: "already_used"}
        assert await t.pos.ledger.sale("checkout-1") is None
        assert [e.id for e in t.events("sale")] == [lane.sale_id]
        assert _refused(t, "charge_mismatch") == 1
        # Charged what the till prices: recorded, with that amount.
        ok = await t.pos.sell(lines(("bread", 1)), sale_id="checkout-2",
                              tenders=Tenders(method="cart-pay", charged=350))
        assert {e.id: e for e in t.events("sale")}[ok.sale_id].data["charged"] == 350
