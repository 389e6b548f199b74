"""The cart screen fits the tablets carts carry: 1280x800 and 1024x768 landscape, 800x1280
portrait. In real Chromium: nothing is wider than the viewport (no horizontal scroll),
and the coupon wallet, the search box and the recommendations are on screen, whole.

Screenshots land in the test's tmp dir; with ``STOREFLEET_SCREENSHOTS=<dir>`` they are
also written there (``docs/screenshots`` holds the committed set, see its README)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.edge_agent.cartscreen.browser import CHROMIUM_ARGS, chromium
from tests.edge_agent.cartscreen.rig import Rig
from tests.edge_agent.cartscreen.scene import full_cart

pytestmark = pytest.mark.browser

SIZES = [(1280, 800), (1024, 768), (800, 1280)]
# what the shopper must be able to reach without scrolling sideways
MUST_FIT = ["#coupon-list", "#search-q", "#recommendations", "#basket-lines", "#checkout",
            "#map svg", "#lang-toggle"]


@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_the_cart_screen_fits_the_tablet(rig: Rig, tmp_path: Path, width: int,
                                               height: int) -> None:
    executable = chromium()
    from playwright.async_api import async_playwright

    await full_cart(rig)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, headless=True,
                                           args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{rig.url}/cart/C1")
            await page.wait_for_selector("#recommendations li")
            await page.wait_for_selector("#coupon-list li")
            await page.fill("#search-q", "milk")
            await page.press("#search-q", "Enter")
            await page.wait_for_selector("#search-results li")

            inner = await page.evaluate("innerWidth")
            assert inner == width
            scroll = await page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= inner, f"page is {scroll} px wide in a {inner} px viewport"
            for selector in MUST_FIT:
                target = page.locator(selector)
                await target.scroll_into_view_if_needed()
                assert await target.is_visible(), selector
                box = await target.bounding_box()
                assert box is not None and box["width"] > 0 and box["height"] > 0, selector
                assert box["x"] >= 0 and box["x"] + box["width"] <= inner, (selector, box)
            # the panels scroll inside themselves; the text in them is not clipped sideways
            clipped = await page.evaluate("""[...document.querySelectorAll('.panel')]
                .filter(p => p.scrollWidth > p.clientWidth).map(p => p.className)""")
            assert clipped == []
            await page.evaluate("scrollTo(0, 0)")
            shot = tmp_path / f"cart-{width}x{height}.png"
            await page.screenshot(path=str(shot))
            assert errors == []
        finally:
            await browser.close()
    if out := os.environ.get("STOREFLEET_SCREENSHOTS"):
        shutil.copyfile(shot, Path(out) / shot.name)
