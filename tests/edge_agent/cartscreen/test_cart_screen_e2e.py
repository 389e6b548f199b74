"""End to end in a real browser: a simulated shopper walks to a promoted aisle and the
coupon pops up on the cart's screen; applying it lowers the basket total; the payment
provider's signed notice (sent twice, as gateways retry) puts the e-receipt on the screen
and records exactly one sale.

Real parts: Mosquitto (store-local bus and uplink), the agent with its cart driver, the
cart simulator walking the demo layout at 5 Hz, the trigger service (zone from the
strongest beacon: the documented positioning fallback), the cart-screen server, and
headless Chromium driven by Playwright. The coupon also reaches the tablet's native
shell over MQTT (``down/screen``), and the ``coupon_issued`` event reaches the uplink.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.app import Agent
from edge_agent.cartscreen import SAMPLE_DATA
from edge_agent.cartscreen.payment import SIGNATURE_HEADER, sign
from edge_agent.cartscreen.runtime import InAisle
from edge_agent.modules.in_aisle import InAisleModule
from firmware_sim.cart import CartSimulator
from firmware_sim.layouts import DEFAULT_LAYOUT, Layout
from protocols.triggers import CouponIssuedData
from tests.edge_agent.cartscreen.browser import CHROMIUM_ARGS, chromium
from tests.edge_agent.helpers import make_config, running_agent, wait_until, watch
from tests.services import Mosquitto


def aisle(agent: Agent) -> InAisle:
    """The agent's in-aisle runtime (its module ``in_aisle``)."""
    return agent.get(InAisleModule).in_aisle

pytestmark = [pytest.mark.mosquitto, pytest.mark.browser]

# A shopper (fixed seed) whose walk crosses the promoted grocery aisles within 40 s.
SEED = 3
PAYMENT_SECRET = "e2e-payment-secret"


async def test_coupon_appears_at_the_shelf_and_applying_it_lowers_the_total(
        tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto) -> None:
    executable = chromium()
    from playwright.async_api import async_playwright

    config = make_config(tmp_path, uplink=uplink_broker, local=local_broker,
                         devices=({"id": "carts", "family": "cart"},), health_interval_s=0.5,
                         modules={"in_aisle": {
                             "cartscreen_port": 0, "cartscreen_host": "127.0.0.1",
                             "store_layout": DEFAULT_LAYOUT, "retail_data": SAMPLE_DATA,
                             "payment_secret": PAYMENT_SECRET}})  # the provider confirms
    layout = Layout.load(DEFAULT_LAYOUT)
    sim = CartSimulator("C1", local_broker.url, layout, seed=SEED, member_share=1.0,
                        items_per_session=(3, 3), dwell_s=1.0)
    sim_stop = asyncio.Event()
    async with running_agent(config) as agent, watch(uplink_broker, config.store_id) as up, \
            async_playwright() as pw:
        assert aisle(agent) is not None and aisle(agent).url is not None
        url = f"{aisle(agent).url}/cart/C1"
        browser = await pw.chromium.launch(executable_path=executable, headless=True,
                                           args=CHROMIUM_ARGS)
        sim_task: asyncio.Task[Any] | None = None
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(url)
            await page.wait_for_selector("#storemap")
            await wait_until(lambda: aisle(agent) is not None
                             and aisle(agent).hub.watching("C1"), what="page's WebSocket")

            sim_task = asyncio.create_task(sim.run(sim_stop), name="test-cart-sim")
            # the shopper walks into the grocery aisles, lingers 2 s: the coupon pops up
            await page.wait_for_selector("#coupon-popup:not([hidden])", timeout=40_000)
            title = await page.text_content("#popup-title")
            code = (await page.text_content("#popup-code")) or ""
            assert title == "5 off your basket" and code.startswith("RDEMOGRC5-")
            await page.screenshot(path=str(tmp_path / "cart-screen-coupon.png"))
            await page.click("#popup-later")

            # wait for an item in the basket, then keep the basket still
            await wait_until(lambda: sim.items_scanned >= 1, within_s=40, what="an item")
            sim_stop.set()
            await asyncio.wait_for(sim_task, 10)
            await page.wait_for_function(
                "Number(document.querySelector('#basket-total').dataset.minor) > 0",
                timeout=10_000)
            before = int(await page.get_attribute("#basket-total", "data-minor") or 0)
            await page.click(f"#coupon-list li[data-code='{code}'] button")
            await page.wait_for_function(
                f"Number(document.querySelector('#basket-total').dataset.minor) < {before}",
                timeout=10_000)
            after = int(await page.get_attribute("#basket-total", "data-minor") or 0)
            assert before - after == min(500, before)  # 5.00 off, never below zero
            assert await page.is_visible(f"#coupon-list li.applied[data-code='{code}']")
            assert await page.text_content("#greeting") != "Welcome"  # a member QR shopper

            # pay: the payment QR; the provider's signed notice (what the payment gateway
            # relays once the shopper's app has paid) -> the e-receipt appears on the
            # screen; the agent records the checkout as a till sale (channel cart)
            await page.click("#checkout")
            await page.wait_for_selector("#pay-popup:not([hidden])", timeout=10_000)
            assert not await page.is_visible("#pay-done")  # no "I have paid" button
            checkout = aisle(agent).backend.view("C1").checkout
            assert checkout is not None
            notice = json.dumps({"payload": checkout["payload"], "amount": after,
                                 "currency": checkout["priced"]["currency"],
                                 "provider_ref": "wx-4200001"}).encode()
            screen_url = aisle(agent).url
            assert screen_url is not None
            for _ in range(2):  # the gateway retries: still one sale
                async with httpx.AsyncClient(base_url=screen_url, timeout=10) as http:
                    r = await http.post("/api/payments/notify", content=notice, headers={
                        SIGNATURE_HEADER: sign(PAYMENT_SECRET, notice)})
                assert r.status_code == 200, r.text
            await page.wait_for_selector("#receipt-popup:not([hidden])", timeout=10_000)
            receipt_total = await page.text_content("#receipt-total")
            await page.click("#receipt-close")

            await page.click("#lang-toggle")
            assert await page.text_content("#checkout") == "结账"
            await page.screenshot(path=str(tmp_path / "cart-screen.png"))
            assert errors == []
        finally:
            sim_stop.set()
            if sim_task is not None:
                await asyncio.gather(sim_task, return_exceptions=True)
            await browser.close()

        # the tablet's native shell got it too, and the cloud ledger gets the event
        assert any(s.kind == "coupon" and code in s.body for s in sim.screens)
        issued_topic = f"sf/v1/{config.store_id}/evt/coupon_issued"
        await wait_until(lambda: bool(up.on(issued_topic)), within_s=10, what="coupon_issued")
        event = json.loads(up.on(issued_topic)[0])
        assert CouponIssuedData.model_validate(event["data"]).code == code
        # the cart checkout reached the cloud as one sale, total as on the e-receipt
        sale_topic = f"sf/v1/{config.store_id}/evt/sale"
        await wait_until(lambda: bool(up.on(sale_topic)), within_s=10, what="sale")
        [sale] = [json.loads(m) for m in up.on(sale_topic)]
        assert sale["data"]["channel"] == "cart" and sale["data"]["totals"]["total"] == after
        assert receipt_total is not None and f"{after / 100:.2f}" in receipt_total
        redeemed_topic = f"sf/v1/{config.store_id}/evt/coupon_redeemed"
        await wait_until(lambda: bool(up.on(redeemed_topic)), within_s=10, what="redeemed")
        redeemed = [json.loads(m)["data"] for m in up.on(redeemed_topic)]
        assert [r["code"] for r in redeemed] == [code]
