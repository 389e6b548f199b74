"""The cashier screen in a real headless Chromium (Playwright), against the lane till over
real HTTP: sign in with the lane's token, scan and type items, take one off, attach a
member, a coupon, a cash tender, complete (receipt on the screen and on the lane's
printer, the sale in the outbox), then refund a unit of the sale; collect a pickup
order by its id."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.edge_agent.cartscreen.browser import chromium_page
from tests.edge_agent.till.rig import WIDTH, lane_rig
from tests.edge_agent.till.test_api import order_dispatch, outbox_events

pytestmark = [pytest.mark.browser]


def money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


async def test_a_cashier_sells_and_refunds_on_the_screen(tmp_path: Path) -> None:
    async with lane_rig(tmp_path, lanes=1, printers=1) as rig, \
            chromium_page() as (page, errors):
        await page.goto(f"{rig.url}/till/")
        # A wrong token: the screen says why and shows no till.
        await page.fill("#token", "y" * 40)
        await page.click("#signin")
        await page.wait_for_selector("#error[data-reason=unauthorized]")
        assert await page.is_hidden("#till")
        await page.fill("#token", rig.lanes[0]["token"])
        await page.click("#signin")
        await page.wait_for_selector("#till:not([hidden])")
        assert "lane-1" in (await page.text_content("#lane") or "")

        await page.click("#new-basket")
        await page.wait_for_selector("#scan-code:not([disabled])")
        # a scanner types the code and Enter; a cashier types a quantity
        await page.fill("#scan-code", "sku-00000")
        await page.press("#scan-code", "Enter")
        await page.wait_for_selector("#lines tr[data-code=sku-00000]")
        await page.fill("#scan-code", "sku-00002")
        await page.fill("#scan-qty", "3")
        await page.click("#scan-btn")
        await page.wait_for_selector("#lines tr[data-code=sku-00002]")
        await page.fill("#scan-code", "no-such-item")
        await page.press("#scan-code", "Enter")
        await page.wait_for_selector("#error[data-reason=unknown_item]")
        await page.click("#lines tr[data-code=sku-00002] .remove-one")
        await page.wait_for_function(
            "document.querySelector('#lines tr[data-code=sku-00002] td:nth-child(2)')"
            ".textContent === '2'")

        await page.select_option("#member-kind", "member_id")
        await page.fill("#member-value", "M0004")
        await page.click("#member-btn")
        await page.wait_for_selector("#member:has-text('M0004')")
        await page.fill("#coupon-code", "CMP-welcome")
        await page.click("#coupon-btn")
        await page.wait_for_selector("#coupons li[data-code=CMP-welcome][data-state=applies]")

        basket_id = await page.text_content("#basket-id") or ""
        async with rig.client(0) as http:
            view = (await http.get(f"/till/v1/baskets/{basket_id}")).json()
        assert await page.text_content("#to-pay") == money(view["to_pay"])
        assert [(ln["code"], ln["qty"]) for ln in view["lines"]] == \
            [("sku-00000", 1), ("sku-00002", 2)]
        await page.select_option("#tender-method", "cash")
        await page.fill("#cash-given", "50.00")
        await page.click("#tender-btn")
        await page.wait_for_function(
            f"document.querySelector('#change').textContent === '{money(5_000 - view['to_pay'])}'")
        await rig.printers_online()
        await page.click("#complete-btn")
        await page.wait_for_selector("#receipt[data-sale-id]")
        receipt = await page.text_content("#receipt") or ""
        assert basket_id in receipt and "Till lane-1" in receipt
        assert money(view["total"]) in receipt
        assert await page.text_content("#printed") == "Receipt printed"
        assert await page.text_content("#change") == money(5_000 - view["to_pay"])
        printed = (await rig.sims["printer-1"].wait_pages(1))[0].text(width=WIDTH)
        assert basket_id in printed
        event = outbox_events(rig, "sale")[basket_id]["data"]
        assert event["till_id"] == "lane-1" and event["member_id"] == "M0004"
        assert event["charged"] == view["to_pay"]

        # Refund one unit of the second line, from the sale the screen just made.
        assert await page.input_value("#refund-sale") == basket_id
        await page.click("#refund-load")
        await page.wait_for_selector("#refund-lines tr")
        rows = await page.query_selector_all("#refund-lines tr")
        assert len(rows) == 2
        line = next(ln for ln in event["priced"]["lines"] if ln["sku"] == "sku-00002")
        await page.fill(f"#refund-lines tr[data-line-id='{line['line_id']}'] .refund-qty", "1")
        await page.click("#refund-btn")
        await page.wait_for_selector("#refund-result[data-paid]")
        paid = int(await page.get_attribute("#refund-result", "data-paid") or "0")
        assert paid == line["paid"] // 2
        refunds = list(outbox_events(rig, "refund").values())
        assert len(refunds) == 1 and refunds[0]["data"]["paid"] == paid
        assert errors == []


async def test_a_cashier_collects_a_pickup_order_on_the_screen(tmp_path: Path) -> None:
    """Decision 0069: the order id from the pick ticket brings the order's lines and
    member into the basket; completing the sale hands the order over."""
    async with lane_rig(tmp_path, lanes=1) as rig, chromium_page() as (page, errors):
        assert await rig.store.pos.orders.handle(order_dispatch("ord-screen-1")) is not None
        await page.goto(f"{rig.url}/till/")
        await page.fill("#token", rig.lanes[0]["token"])
        await page.click("#signin")
        await page.click("#new-basket")
        await page.wait_for_selector("#order-id:not([disabled])")
        await page.fill("#order-id", "no-such-order")
        await page.click("#order-btn")
        await page.wait_for_selector("#error[data-reason=unknown_order]")
        await page.fill("#order-id", "ord-screen-1")
        await page.press("#order-id", "Enter")
        await page.wait_for_selector("#order:has-text('ord-screen-1')")
        await page.wait_for_selector("#lines tr[data-code=sku-00007]")
        assert await page.is_visible("#order-clear")
        assert "M0004" in (await page.text_content("#member") or "")
        await page.select_option("#tender-method", "card")
        await page.click("#tender-btn")
        await page.click("#complete-btn")
        await page.wait_for_selector("#receipt[data-sale-id]")
        stored = await rig.store.pos.ledger.order("ord-screen-1")
        assert stored is not None and stored.status == "handed_over"
        sale_id = await page.get_attribute("#receipt", "data-sale-id") or ""
        assert outbox_events(rig, "sale")[sale_id]["data"]["order_id"] == "ord-screen-1"
        assert errors == []
