"""An applied coupon can be taken off the basket from the cart screen (decision 0019): the
basket re-prices without it, the code goes back to the wallet, and its reservation for
this cart ends, so the member's other cart may apply it. Over real HTTP and in headless
Chromium, on the cart-screen rig (real cart driver, trigger service and ledger)."""

from __future__ import annotations

import pytest

from tests.edge_agent.cartscreen.browser import chromium_page
from tests.edge_agent.cartscreen.rig import CEREAL, MILK, Rig

TOM = "M0004"


async def shopper(rig: Rig, cart: str) -> str:
    """Tom signs into ``cart`` and scans cereal and two milks; the session id."""
    sid = f"sess-{cart}"
    await rig.session(cart, sid, f"SFM:{TOM}")
    await rig.item(cart, sid, CEREAL)
    await rig.item(cart, sid, MILK, 2)
    return sid


def bad_requests(rig: Rig, reason: str) -> float:
    return rig.ctx.registry.get_sample_value("storefleet_cartscreen_bad_requests_total",
                                             {"reason": reason}) or 0.0


async def test_removing_a_coupon_reprices_and_releases_it_for_another_cart(rig: Rig) -> None:
    sid = await shopper(rig, "01")
    await shopper(rig, "03")
    [code] = await rig.dwell("01", sid, TOM, 3)
    full = (await rig.http.get("/api/cart/01/state")).json()["basket"]["total"]
    assert full == 2590 + 2 * 1490
    assert (await rig.http.post(f"/api/cart/01/coupons/{code}/apply")).json()["total"] \
        == full - 500
    assert (await rig.http.post(f"/api/cart/03/coupons/{code}/apply")).status_code == 409

    removed = await rig.http.post(f"/api/cart/01/coupons/{code}/remove")
    assert removed.status_code == 200
    basket = removed.json()
    assert basket["total"] == full and basket["discount"] == 0
    assert basket["coupons_applied"] == []
    [entry] = (await rig.http.get("/api/cart/01/state")).json()["wallet"]
    assert entry["code"] == code and entry["applied"] is False  # back in the wallet
    # released: Tom's other cart may have it now, and 01 is the one refused
    taken = await rig.http.post(f"/api/cart/03/coupons/{code}/apply")
    assert taken.status_code == 200 and taken.json()["coupons_applied"] == [code]
    assert (await rig.http.post(f"/api/cart/01/coupons/{code}/apply")).status_code == 409


async def test_removing_from_an_unknown_cart_or_a_code_not_applied_is_refused(
        rig: Rig) -> None:
    sid = await shopper(rig, "01")
    [code] = await rig.dwell("01", sid, TOM, 3)
    assert (await rig.http.get("/api/cart/01/state")).status_code == 200

    unknown = await rig.http.post(f"/api/cart/C99/coupons/{code}/remove")
    assert unknown.status_code == 404 and unknown.json() == {"detail": "unknown cart 'C99'"}
    assert "C99" not in rig.in_aisle.backend.views  # the refusal created no cart view
    not_applied = await rig.http.post(f"/api/cart/01/coupons/{code}/remove")
    assert not_applied.status_code == 404
    assert not_applied.json() == {"detail": f"coupon {code!r} is not applied on cart '01'"}
    await rig.http.post(f"/api/cart/01/coupons/{code}/apply")
    assert (await rig.http.post("/api/cart/01/coupons/RDEMOGRC5-999999/remove")
            ).status_code == 404
    # the applied code stays applied after the refusals
    state = (await rig.http.get("/api/cart/01/state")).json()
    assert state["basket"]["coupons_applied"] == [code]
    assert bad_requests(rig, "unknown_cart") == 1
    assert bad_requests(rig, "coupon_not_applied") == 2
    assert bad_requests(rig, "404") == 3


@pytest.mark.browser
async def test_the_shopper_removes_an_applied_coupon_on_the_screen(rig: Rig) -> None:
    sid = await shopper(rig, "01")
    await shopper(rig, "03")
    [code] = await rig.dwell("01", sid, TOM, 3)
    async with chromium_page() as (page, errors):
        await page.goto(f"{rig.url}/cart/01")
        entry = page.locator(f'#coupon-list li[data-code="{code}"]')
        await entry.locator("button.apply").click()
        await page.wait_for_selector("#coupon-list li.applied")
        full = 2590 + 2 * 1490
        assert int(await page.get_attribute("#basket-total", "data-minor") or 0) \
            == full - 500
        assert await page.text_content("#basket-savings") == "5.00"
        remove = entry.locator("button.remove")
        assert await remove.text_content() == "Remove"

        await remove.click()
        await page.wait_for_selector("#coupon-list li:not(.applied) button.apply")
        assert int(await page.get_attribute("#basket-total", "data-minor") or 0) == full
        assert await page.text_content("#basket-savings") == "0.00"
        assert await page.locator("#basket-lines .disc").count() == 0
        assert await entry.locator("button.remove").count() == 0
        assert await entry.locator("button.apply").text_content() == "Apply"
        # the code is free again: Tom's other cart applies it
        assert (await rig.http.post(f"/api/cart/03/coupons/{code}/apply")).status_code \
            == 200

        await page.click("#lang-toggle")
        assert await entry.locator("button.apply").text_content() == "使用"
        await rig.http.post(f"/api/cart/03/coupons/{code}/remove")
        await entry.locator("button.apply").click()
        await page.wait_for_selector("#coupon-list li.applied button.remove")
        assert await entry.locator("button.remove").text_content() == "取消使用"
        assert errors == []
