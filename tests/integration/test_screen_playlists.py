"""Screen playlists end to end (decision 0051): the real cloud under uvicorn with
ingest, real Mosquitto, a real agent with the content, till and screens modules, and a
real headless Chromium on the box's signage page.

HQ publishes a promotion, uploads three real PNGs, saves playlists (an image for
today in the store's time zone, one for the other days, one limited to the bakery, a
card with the promotion) and publishes them with the ``fleet screens`` CLI. The box
applies the manifest, the status API shows the ``playlists`` part converged with the
time the box took it, and the signage page at the entrance rotates the image of today's
window (decoded by the browser) and the card with the promotion's live name and
discount; it never lists the other days' image nor the bakery's, which the bakery's own
page shows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from cloud.promotions.signing import SnapshotSigner
from edge_agent.modules.screens import Screens
from tests.cloud.conftest import ADMIN, auth
from tests.edge_agent.cartscreen.browser import chromium, chromium_page
from tests.edge_agent.helpers import wait_until
from tests.edge_agent.screens.media import png
from tests.fleet.test_fleet_artifacts import fleet as fleet_cli
from tests.integration.rollout_fleet import Fleet, fleet, until_true
from tests.services import Mosquitto

pytestmark = [pytest.mark.mosquitto, pytest.mark.browser]

TIMEZONE = "Asia/Tokyo"  # not the test machine's: the box must use the document's
PROMOTION = {"kind": "markdown", "id": "P-apples", "name": "Winter apples",
             "percent_bp": 2_000, "scope": {"skus": ["apple"]}}


async def upload(f: Fleet, body: bytes, version: str) -> str:
    r = await f.http.post("/api/v1/artifacts", content=body, headers=auth(ADMIN),
                          params={"kind": "asset", "target": "content", "version": version})
    assert r.status_code == 201, r.text
    return str(r.json()["payload"]["sha256"])


def screens_of(f: Fleet) -> Screens:
    module = f.agents[0].module("screens")
    assert isinstance(module, Screens)
    return module


async def shown(page: Any, item_id: str) -> None:
    await page.wait_for_function("(id) => window.signage && window.signage.shown"
                                 ".includes(id)", arg=item_id, timeout=15_000)


async def test_hq_publishes_playlists_and_the_signage_shows_them(
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]) -> None:
    chromium()  # fail (or skip) before the fleet starts when there is no browser
    async with fleet(tmp_path, mosquitto_factory, 1, content_signer=SnapshotSigner.generate(),
                     till=True, modules={"screens": {"port": 0, "host": "127.0.0.1"}}) as f:
        store = f.agents[0].config.store_id
        screens = screens_of(f)
        assert screens.url is not None
        # ---- HQ: a live promotion, the store's time zone, three images ----
        r = await f.http.put(f"/api/v1/promotions/{PROMOTION['id']}", headers=auth(ADMIN),
                             json={"promotion": PROMOTION})
        assert r.status_code == 200, r.text
        assert (await f.http.post("/api/v1/promotions/publish", headers=auth(ADMIN))
                ).status_code == 200
        r = await f.http.put(f"/api/v1/stores/{store}/maintenance", headers=auth(ADMIN),
                             json={"timezone": TIMEZONE, "window": "02:00-04:00"})
        assert r.status_code == 200, r.text
        today = dt.datetime.now(ZoneInfo(TIMEZONE)).isoweekday()
        hero = await upload(f, png(4, 3, (200, 30, 30)), "hero-1")
        other = await upload(f, png(5, 5, (30, 200, 30)), "other-1")
        bread = await upload(f, png(6, 2, (30, 30, 200)), "bread-1")
        playlists = {"playlists": [{"name": "signage", "surface": "signage", "items": [
            {"id": "hero", "kind": "image", "sha256": hero, "duration_s": 1,
             "windows": [{"days": [today], "start": "00:00", "end": "24:00"}]},
            {"id": "other-days", "kind": "image", "sha256": other, "duration_s": 1,
             "windows": [{"days": [d for d in range(1, 8) if d != today]}]},
            {"id": "bread", "kind": "image", "sha256": bread, "duration_s": 1,
             "zones": ["bakery"]},
            {"id": "deal", "kind": "card", "title": "Today only",
             "promotion_id": PROMOTION["id"], "duration_s": 1},
        ]}]}
        (tmp_path / "playlists.json").write_text(json.dumps(playlists))

        async def cli(*args: str) -> Any:  # the fleet CLI, a real subprocess
            done = await asyncio.to_thread(fleet_cli, str(f.http.base_url), ADMIN, *args,
                                           "--json", config=tmp_path / "config")
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        assert (await cli("screens", "put", str(tmp_path / "playlists.json")))["version"] == 1
        shown_at = await cli("screens", "show", "--store", store, "--zone", "bakery")
        assert [n["item"]["id"] for n in shown_at["now"]["signage"]] == [
            "hero", "bread", "deal"]
        out = await cli("screens", "publish", "--store", store)
        assert out["manifests"] == {store: 1} and out["failed"] == []

        # ---- the box applies; HQ sees the playlists part converged, with its time ----
        await wait_until(lambda: screens.player.version == 1, within_s=30,
                         what="the box loaded the playlists")
        await wait_until(lambda: screens._promotions() is not None, within_s=30,
                         what="the till holds the promotion snapshot")

        async def converged() -> bool:
            r = await f.http.get("/api/v1/content/status", headers=auth(ADMIN),
                                 params={"store_id": store})
            part = r.json()[0]["parts"].get("playlists", {})
            return part.get("state") == "converged" and part.get("applied") == "1"

        await until_true(converged, what="status API shows the playlists converged")
        r = await f.http.get("/api/v1/content/status", headers=auth(ADMIN),
                             params={"store_id": store})
        part = r.json()[0]["parts"]["playlists"]
        assert part["published"] == "1" and part["detail"] == ""
        assert part["applied_ms"] > 0

        # ---- the box's HTTP side: only the playlists' assets, the right bytes ----
        async with httpx.AsyncClient(base_url=screens.url, timeout=30) as box:
            r = await box.get("/screens/now", params={"zone": "entrance"})
            now = r.json()
            assert now["timezone"] == TIMEZONE and now["version"] == 1
            assert [i["id"] for i in now["items"]] == ["hero", "deal"]
            assert now["items"][1]["card"]["offer"] == "20% off"
            r = await box.get(f"/screens/asset/{hero}")
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            assert r.content == png(4, 3, (200, 30, 30))
            assert (await box.get(f"/screens/asset/{'0' * 64}")).status_code == 404
            assert (await box.get("/screens/now", params={"surface": "tv"})).status_code == 400

        # ---- a real browser on the signage pages ----
        async with chromium_page(width=800, height=600) as (page, errors):
            await page.goto(f"{screens.url}/signage?zone=entrance")
            await page.wait_for_function(
                "() => { const img = document.querySelector('#stage[data-item-id=hero] img');"
                " return img !== null && img.complete && img.naturalWidth === 4; }",
                timeout=15_000)
            card = await page.wait_for_selector("#stage[data-item-id=deal] .card",
                                                timeout=15_000)
            assert card is not None
            text = await card.inner_text()
            assert "Today only" in text and "Winter apples" in text and "20% off" in text
            await shown(page, "hero")  # a second round: the rotation goes on
            listed = await page.evaluate("() => window.signage.items.map(i => i.id)")
            assert listed == ["hero", "deal"]
            seen = await page.evaluate("() => window.signage.shown")
            assert "other-days" not in seen and "bread" not in seen

            await page.goto(f"{screens.url}/signage?zone=bakery")
            await page.wait_for_function(
                "() => { const img = document.querySelector('#stage[data-item-id=bread] img');"
                " return img !== null && img.complete && img.naturalWidth === 6; }",
                timeout=15_000)
            listed = await page.evaluate("() => window.signage.items.map(i => i.id)")
            assert listed == ["hero", "bread", "deal"]
            assert errors == []
