"""The screens on the cart screens' own server (decision 0051), in a real Chromium: an
idle cart's page shows the store's ``cart`` playlist (the image decoded, the card with
the promotion's offer) and hides it once the basket has an item; the signage page is
served on the same origin."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edge_agent.modules.content import AppliedContent
from edge_agent.screens.player import ScreenPlayer, ScreensMetrics
from edge_agent.screens.web import screens_app
from pricing import PromotionSnapshot
from protocols.content import ContentManifest
from tests.edge_agent.cartscreen.browser import chromium_page
from tests.edge_agent.cartscreen.rig import MILK, running_rig
from tests.edge_agent.screens.media import png

pytestmark = pytest.mark.browser

IMAGE = png(7, 3, (10, 120, 240))
SHA = "5" * 64  # the cache names files by sha256; the player serves what the document names


def loaded(tmp_path: Path) -> ScreenPlayer:
    cas = tmp_path / "cas"
    cas.mkdir()
    (cas / SHA).write_bytes(IMAGE)
    doc = {"version": 4, "timezone": "UTC", "playlists": [
        {"name": "idle", "surface": "cart", "items": [
            {"id": "hello", "kind": "image", "sha256": SHA, "duration_s": 1},
            {"id": "grocery-only", "kind": "image", "sha256": SHA, "zones": ["grocery"]},
            {"id": "deal", "kind": "card", "title": "Cart deal", "promotion_id": "P1",
             "duration_s": 1}]},
        {"name": "wall", "surface": "signage", "items": [
            {"id": "wall-img", "kind": "image", "sha256": SHA, "duration_s": 1}]}]}
    snapshot = PromotionSnapshot.model_validate({"version": 1, "currency": "EUR",
                                                 "promotions": [
        {"kind": "markdown", "id": "P1", "name": "Oat milk", "percent_bp": 1500,
         "scope": {"skus": [MILK]}}]})
    player = ScreenPlayer(store_id="S001", metrics=ScreensMetrics(CollectorRegistry()),
                          promotions=lambda: snapshot)
    player.load(AppliedContent(manifest=ContentManifest(
        store_id="S001", version=1, created_ms=0, documents={"playlists": doc}),
        applied_ms=0, signed={}, cas=cas))
    return player


async def test_an_idle_cart_shows_the_cart_playlist(tmp_path: Path) -> None:
    player = loaded(tmp_path)
    async with running_rig(tmp_path / "rig") as rig:
        server = rig.in_aisle.server
        assert server is not None
        server.add_routes(screens_app(player, now=lambda: dt.datetime.now(dt.UTC),
                                      registry=CollectorRegistry()).routes)
        async with chromium_page(width=1280, height=800) as (page, errors):
            await page.goto(f"{rig.url}/cart/C1")
            await page.wait_for_function(
                "() => { const img = document.querySelector('#idle-loop[data-item-id=hello]"
                " img'); return img !== null && img.complete && img.naturalWidth === 7; }",
                timeout=15_000)
            assert await page.is_visible("#idle-loop")
            card = await page.wait_for_selector("#idle-loop[data-item-id=deal] .idle-card",
                                                timeout=15_000)
            assert card is not None
            text = await card.inner_text()
            assert "Cart deal" in text and "Oat milk" in text and "15% off" in text
            # a member starts shopping and puts milk in: not idle any more, the loop goes
            await rig.session("C1", "sess-1", qr="SFM:M0001")
            await rig.item("C1", "sess-1", MILK)
            await page.reload()  # the rig's driver pushes nothing to the page
            await page.wait_for_selector("#basket-lines li", timeout=10_000)
            await page.wait_for_timeout(2_500)  # two of the loop's 1-second items
            assert not await page.is_visible("#idle-loop")
            # the signage on the same origin
            await page.goto(f"{rig.url}/signage")
            await page.wait_for_function(
                "() => { const img = document.querySelector('#stage img');"
                " return img !== null && img.complete && img.naturalWidth === 7; }",
                timeout=15_000)
            shown = await page.evaluate("() => window.signage.items.map(i => i.id)")
            assert shown == ["wall-img"]
            assert errors == []
