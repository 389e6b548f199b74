"""A product the cart's camera saw going in without a scan: the shopper is asked to scan it,
on the web screen (WebSocket, rendered in a real browser) and on the tablet's native shell
(``down/screen`` on the store bus); a product that was scanned raises nothing."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from protocols import decode
from protocols.cart import ScreenMessage
from protocols.triggers import CartScreenPush
from protocols.vision import CategorySeen
from tests.edge_agent.cartscreen.browser import chromium_page
from tests.edge_agent.cartscreen.rig import CEREAL, Rig

WINDOW_S = 30  # InAisleSettings.unscanned_window_s default


async def _seen(rig: Rig, cart: str, sid: str, category: str, n: int) -> None:
    await rig.in_aisle.seen.on_seen(CategorySeen(
        id=f"seen-{n}", source=cart, category=category, confidence=0.9,
        ts=rig.ctx.clock.now_ms(), snapshot_id=f"snap-{n}", session_id=sid, model="test@1"))


async def _pictures_then_sweep(rig: Rig) -> list[str]:
    """Cart C1 scans cereal; its camera sees cereal and milk go in; the window passes."""
    await rig.session("C1", "sess-1")
    await rig.item("C1", "sess-1", CEREAL)  # cereal_box, scanned
    await _seen(rig, "C1", "sess-1", "cereal_box", 1)
    await _seen(rig, "C1", "sess-1", "milk_carton", 2)  # never scanned
    rig.ctx.clock.advance(WINDOW_S + 1)  # type: ignore[attr-defined]
    return [a.category for a in await rig.in_aisle.seen.sweep()]


def _native_screens(rig: Rig, cart: str) -> list[ScreenMessage]:
    topic = f"store/cart/{cart}/down/screen"
    return [decode(p, ScreenMessage) for t, p, _, _ in rig.ctx.published if t == topic]


async def test_an_unscanned_item_prompts_the_shopper_on_both_screens(rig: Rig) -> None:
    async with connect(f"ws://127.0.0.1:{rig.in_aisle.server.port}/ws/cart/C1") as ws:  # type: ignore[union-attr]
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "hello"
        assert await _pictures_then_sweep(rig) == ["milk_carton"]
        msgs: list[CartScreenPush] = []
        while not any(m.type == "scan_reminder" for m in msgs):
            msgs.append(CartScreenPush.model_validate_json(await asyncio.wait_for(ws.recv(), 5)))
    [reminder] = [m for m in msgs if m.type == "scan_reminder"]
    assert reminder.cart_id == "C1"
    assert reminder.data == {"category": "milk_carton", "pictured": 1, "scanned": 0}

    for _ in range(100):  # the native shell's copy is sent in the background
        if _native_screens(rig, "C1"):
            break
        await asyncio.sleep(0.01)
    [native] = _native_screens(rig, "C1")
    assert native.kind == "alert" and native.title == "Did you forget to scan something?"
    assert "a carton of milk" in native.body
    [alarm] = [e for e in rig.ctx.events if e.kind == "device_alarm"]
    assert alarm.data["category"] == "milk_carton" and alarm.data["alarm"] == "unscanned_item"

    # judged once: a later sweep says nothing more, on any screen
    assert await rig.in_aisle.seen.sweep() == []
    assert len(_native_screens(rig, "C1")) == 1


@pytest.mark.browser
async def test_the_prompt_is_shown_in_the_browser_in_both_languages(rig: Rig) -> None:
    async with chromium_page() as (page, errors):
        await page.goto(f"{rig.in_aisle.url}/cart/C1")
        await page.wait_for_selector("#storemap")
        for _ in range(500):
            if rig.in_aisle.hub.watching("C1"):
                break
            await asyncio.sleep(0.01)
        assert not await page.is_visible("#scan-reminder")

        assert await _pictures_then_sweep(rig) == ["milk_carton"]
        await page.wait_for_selector("#scan-reminder:not([hidden])", timeout=10_000)
        body = await page.text_content("#scan-reminder-body")
        assert body == ("We saw a carton of milk go into your cart. "
                        "Please scan it so it is on your bill.")
        await page.click("#lang-toggle")
        assert await page.text_content("#scan-reminder-body") == \
            "我们看到盒装牛奶放入了购物车，请扫码后再放入。"  # noqa: RUF001
        await page.click("#scan-reminder-ok")
        assert not await page.is_visible("#scan-reminder")
        assert errors == []
