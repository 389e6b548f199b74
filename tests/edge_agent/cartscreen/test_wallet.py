"""The coupon wallet groups a member's codes of the same promotion under one entry with a
count, as shoppers' wallets do; applying from a group applies exactly one of its codes.
Over real HTTP (the state payload) and in headless Chromium (what the shopper sees)."""

from __future__ import annotations

import pytest

from tests.edge_agent.cartscreen.browser import chromium_page
from tests.edge_agent.cartscreen.rig import MILK, Rig
from tests.edge_agent.cartscreen.scene import two_grocery_coupons

TIMES = "\N{MULTIPLICATION SIGN}"  # the wallet shows a count as "<title> <times>2"


async def test_two_codes_of_one_promotion_are_one_wallet_entry_with_a_count(rig: Rig) -> None:
    yesterday, today = await two_grocery_coupons(rig)
    assert yesterday != today
    await rig.item("C1", "sess-day2", MILK, 2)
    state = (await rig.http.get("/api/cart/C1/state")).json()
    assert sorted(c["code"] for c in state["coupons"]) == sorted([yesterday, today])
    [group] = state["wallet"]
    # yesterday's code comes from the ledger without the rule's texts: the group still
    # shows the promotion's title, not its engine code
    assert group["title"] == "5 off your basket" and group["title_zh"] == "整单立减5元"
    assert group["engine_code"] == "GROCERY5" and group["count"] == 2
    assert sorted(group["codes"]) == sorted([yesterday, today])
    assert group["applied"] is False and group["code"] in (yesterday, today)

    before = state["basket"]["total"]
    applied = (await rig.http.post(f"/api/cart/C1/coupons/{group['code']}/apply")).json()
    assert applied["coupons_applied"] == [group["code"]]  # one code, not the whole group
    assert applied["total"] == before - 500
    [after] = (await rig.http.get("/api/cart/C1/state")).json()["wallet"]
    assert after["applied"] is True and after["code"] == group["code"] and after["count"] == 2


@pytest.mark.browser
async def test_the_wallet_shows_one_entry_per_promotion_and_applies_one_code(rig: Rig) -> None:
    yesterday, today = await two_grocery_coupons(rig)
    await rig.item("C1", "sess-day2", MILK, 2)
    async with chromium_page() as (page, errors):
        await page.goto(f"{rig.url}/cart/C1")
        await page.wait_for_selector("#coupon-list li")
        entries = page.locator("#coupon-list li")
        assert await entries.count() == 1
        assert await entries.locator(".title").text_content() \
            == f"5 off your basket {TIMES}2"
        codes = (await entries.get_attribute("data-codes") or "").split()
        assert sorted(codes) == sorted([yesterday, today])
        before = int(await page.get_attribute("#basket-total", "data-minor") or 0)
        assert before == 2 * 1490

        await entries.locator("button").click()
        await page.wait_for_selector("#coupon-list li.applied")
        assert int(await page.get_attribute("#basket-total", "data-minor") or 0) \
            == before - 500
        assert await entries.count() == 1
        applied = await rig.http.get("/api/cart/C1/state")
        assert [c["code"] for c in applied.json()["coupons"] if c["applied"]] \
            == [await entries.get_attribute("data-code")]

        await page.click("#lang-toggle")
        assert await entries.locator(".title").text_content() == f"整单立减5元 {TIMES}2"
        assert errors == []
