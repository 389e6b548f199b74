"""The assistants' page in headless Chromium against the cloud on a real uvicorn server
(SQLite): an assistant signs in with the token in the URL fragment, sees their store's
birthdays, lapsed members and rankings, looks a member up at the counter, shows their
join QR, and a real click on the one-tap coupon issues a coupon the API then shows."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cloud.main import create_app
from cloud.publish import MemoryPublisher
from protocols.clock import ManualClock
from tests.cloud.api.test_docs_offline import served
from tests.cloud.conftest import ADMIN, auth
from tests.cloud.staff.helpers import (
    ANN,
    BOB,
    DAY_MS,
    NOW,
    Sales,
    born,
    join,
    join_code,
    register,
    staff_settings,
)
from tests.edge_agent.cartscreen.browser import chromium_page

pytestmark = pytest.mark.browser


async def test_one_tap_coupon_from_the_page(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'cloud.db'}"
    born(db_url, "S001", "S002")
    clock = ManualClock(NOW - 100 * DAY_MS)
    settings = staff_settings(db_url)
    app = create_app(settings, publisher=MemoryPublisher(), clock=clock)
    sales = Sales(db_url, settings)
    try:
        async with served(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as c:
            await register(c, "S001", "ann", "Ann Example")
            await register(c, "S001", "bob", "Bob")
            r = await c.post("/api/v1/campaigns", headers=auth(ADMIN), json={
                "campaign_id": "winback", "name": "We miss you", "trigger": "manual",
                "benefit": {"amount_off": 500}})
            assert r.status_code == 201, r.text
            lapsed = await join(c, await join_code(c, ANN, "S001"), "j1", birthday="12-04")
            regular = await join(c, await join_code(c, BOB, "S001"), "j2")
            clock.advance(100 * DAY_MS / 1000)
            sales.sell("S001", "e1", member=regular, paid=4250, ts=NOW - DAY_MS)
            sales.sell("S001", "e2", member=lapsed, paid=990, ts=NOW - 80 * DAY_MS)

            async with chromium_page(width=900, height=1400) as (page, errors):
                await page.goto(f"{base}/staff/#token={ANN}")
                await page.wait_for_selector("#app:not([hidden])")
                assert await page.text_content("#who") == "Ann Example · store S001"
                assert "#token" not in page.url  # the token left the address bar
                await page.wait_for_selector("#birthday-list li")
                assert await page.text_content("#birthday-list") == f"{lapsed}: 12-04"

                # Lapsed (60 days by default): only the member who last bought 80 days
                # ago; a real click gives the coupon.
                rows = page.locator("#lapsed-rows tr")
                await rows.first.wait_for()
                assert await rows.count() == 1
                assert await rows.first.get_attribute("data-member") == lapsed
                await page.click("#lapsed-rows button.give-coupon")
                cell = page.locator("#lapsed-rows tr td").nth(2)
                await page.wait_for_function(
                    "() => document.querySelector('#lapsed-rows tr td:nth-child(3)')"
                    ".textContent.startsWith('coupon ')")
                shown = (await cell.text_content() or "").removeprefix("coupon ")

                # Rankings: the store's standing and the assistants, bob first by sales.
                await page.wait_for_selector("#rank-rows tr")
                ranked = await page.locator("#rank-rows tr").evaluate_all(
                    "rows => rows.map(r => r.dataset.assistant)")
                assert ranked == ["bob", "ann"]
                assert "#1 of 2" in (await page.text_content("#store-standing") or "")

                # The member at the counter, typed in.
                await page.fill("#counter-ref", lapsed)
                await page.click("#counter-go")
                await page.wait_for_selector("#member:not([hidden])")
                assert await page.text_content("#m-id") == lapsed
                assert shown in (await page.text_content("#m-coupons") or "")
                assert "recruited by ann" in (await page.text_content("#m-extra") or "")

                await page.click("#join-go")
                await page.wait_for_selector("#join-qr svg")
                assert (await page.text_content("#join-code") or "").startswith("SFJ1.")
                await page.screenshot(path=str(tmp_path / "staff-page.png"))
                assert errors == []
                assert await page.is_hidden("#error")

            owned = (await c.get(f"/api/v1/members/{lapsed}/coupons",
                                 headers=auth(ADMIN))).json()
            assert [(x["code"], x["campaign_id"], x["redeemed"]) for x in owned] == [
                (shown, "winback", False)]
            r = await c.get("/api/v1/staff/stores/S001/lapsed", headers=auth(ANN))
            assert [x["coupon"] for x in r.json()] == [shown]
    finally:
        sales.close()


async def test_a_wrong_token_shows_the_problem(tmp_path: Path) -> None:
    app = create_app(staff_settings(f"sqlite:///{tmp_path / 'cloud.db'}"),
                     publisher=MemoryPublisher(), clock=ManualClock(NOW))
    async with served(app) as base, chromium_page() as (page, errors):
        await page.goto(f"{base}/staff/")
        await page.fill("#token", "not-a-token-of-ours")
        await page.click("#signin-go")
        await page.wait_for_selector("#error:not([hidden])")
        assert (await page.text_content("#error") or "").startswith("401")
        assert await page.is_hidden("#app")
        assert errors == []
