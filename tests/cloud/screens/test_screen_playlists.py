"""Screen playlists authored through the API (decision 0051) on SQLite and PostgreSQL:
validated with clear 422s, versions kept, what plays where and when answered in the
store's time zone, and published in the stores' signed content manifests."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx

from cloud.db import make_engine, upgrade
from cloud.db.engine import make_session_factory, writer
from cloud.db.models_artifacts import Artifact
from cloud.ingest.batch import BatchProcessor
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from protocols import encode, topics
from protocols.clock import ManualClock
from protocols.messages import Birth
from protocols.screens import ScreenPlaylists
from protocols.signed import load_public_keys, verify_signed
from tests.cloud.conftest import ADMIN, TECH, api_client, auth, make_settings

URL = "/api/v1/screens/playlists"
HERO, PROMO_VIDEO, BAKERY, NIGHT = (c * 64 for c in "abcd")
SIZES = {HERO: 1234, PROMO_VIDEO: 98765, BAKERY: 55, NIGHT: 66}


def seed(db_url: str, shas: set[str], *, kind: str = "asset") -> None:
    """Stores s1 and s2 are known (born); the assets are uploaded."""
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        sessions = make_session_factory(writer(engine))
        BatchProcessor(sessions, clock=ManualClock(), max_payload=65536).process([
            (topics.state(store), encode(Birth(bd_seq=1, ts=1, agent_version="9", devices=[])))
            for store in ("s1", "s2")])
        add_assets(db_url, shas, kind=kind)
    finally:
        engine.dispose()


def add_assets(db_url: str, shas: set[str], *, kind: str = "asset") -> None:
    engine = make_engine(db_url)
    try:
        with make_session_factory(writer(engine)).begin() as session:
            for sha in shas:
                session.add(Artifact(sha256=sha, kind=kind, target="content",
                                     version=sha[:16], size=SIZES[sha], created_ms=0,
                                     signed={}))
    finally:
        engine.dispose()


def spec() -> dict[str, Any]:
    """Signage all day with a bakery-only item; the evening swaps the hero for a night
    slide on weekdays; the carts' idle loop only on weekends."""
    return {"playlists": [
        {"name": "signage-day", "surface": "signage", "items": [
            {"id": "hero", "kind": "image", "sha256": HERO, "title": "Hero", "duration_s": 8,
             "windows": [{"days": [1, 2, 3, 4, 5], "start": "08:00", "end": "18:00"}]},
            {"id": "night", "kind": "image", "sha256": NIGHT,
             "windows": [{"start": "18:00", "end": "24:00"}]},
            {"id": "bread", "kind": "image", "sha256": BAKERY, "zones": ["bakery"]},
            {"id": "deal", "kind": "card", "title": "Today only", "promotion_id": "P-10"},
        ]},
        {"name": "carts-weekend", "surface": "cart",
         "windows": [{"days": [6, 7], "start": "09:00", "end": "20:00"}],
         "items": [{"id": "clip", "kind": "video", "sha256": PROMO_VIDEO, "duration_s": 30}]},
        {"name": "entrance", "surface": "signage", "zones": ["entrance"], "items": [
            {"id": "welcome", "kind": "card", "title": "Welcome", "promotion_id": "P-10"}]},
    ]}


async def refused(c: httpx.AsyncClient, body: dict[str, Any], reason: str = "",
                  status: int = 422) -> str:
    r = await c.put(URL, headers=auth(ADMIN), json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if reason:
        assert r.json()["type"].endswith(f"/{reason}"), r.json()
    return json.dumps(r.json())


def ids(body: dict[str, Any], surface: str) -> list[str]:
    return [n["item"]["id"] for n in body["now"][surface]]


async def test_author_validate_answer_and_publish(db_url: str) -> None:
    seed(db_url, {HERO, PROMO_VIDEO, BAKERY})
    publisher = MemoryPublisher()
    async with api_client(create_app(make_settings(db_url), publisher=publisher)) as c:
        assert (await c.get(URL, headers=auth(ADMIN))).status_code == 404
        r = await c.post(f"{URL}/publish", headers=auth(ADMIN), json={})
        assert r.status_code == 404, r.text
        body = spec()
        assert NIGHT in await refused(c, body, "unknown_asset")  # never uploaded
        # invalid windows, items and playlists: each a 422 that says what is wrong
        for path, value, says in (
                (("windows", 0, "end"), "07:00", "ends before it starts"),
                (("windows", 0, "start"), "8:00", "not a local time"),
                (("windows", 0, "days"), [0, 8], "ISO weekdays")):
            bad = copy.deepcopy(body)
            target = bad["playlists"][0]["items"][0]
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            assert says in await refused(c, bad)
        bad = copy.deepcopy(body)
        del bad["playlists"][0]["items"][3]["promotion_id"]
        assert "a title and a promotion_id" in await refused(c, bad)
        bad = copy.deepcopy(body)
        bad["playlists"][1]["name"] = "entrance"
        assert "appear twice" in await refused(c, bad)
        bad = copy.deepcopy(body)
        bad["playlists"][0]["surface"] = "billboard"
        await refused(c, bad)
        assert (await c.put(URL, headers=auth(TECH), json=body)).status_code == 403

        add_assets(db_url, {NIGHT})
        for version in (1, 2):
            r = await c.put(URL, headers=auth(ADMIN), json=body)
            assert r.status_code == 201, r.text
            assert r.json()["version"] == version and r.json()["assets"] == 4
        r = await c.get(URL, headers=auth(TECH))
        assert r.json()["version"] == 2 and r.json()["created_by"]
        assert r.json()["spec"]["playlists"][0]["items"][0]["windows"][0]["days"] == [
            1, 2, 3, 4, 5]

        # what plays where and when, in the store's time zone
        r = await c.put("/api/v1/stores/s1/maintenance", headers=auth(ADMIN),
                        json={"timezone": "Europe/Berlin", "window": "02:00-04:00"})
        assert r.status_code == 200, r.text
        store = "/api/v1/stores/s1/screens/playlists"
        # Monday 2026-12-07 09:30 in Berlin, given as local time, in the bakery
        r = await c.get(store, headers=auth(TECH),
                        params={"at": "2026-12-07T09:30:00", "zone": "bakery"})
        assert r.status_code == 200, r.text
        s1 = r.json()
        assert s1["playlists"]["timezone"] == "Europe/Berlin"
        assert s1["playlists"]["version"] == 2
        assert s1["at"] == "2026-12-07T09:30:00+01:00"
        assert ids(s1, "signage") == ["hero", "bread", "deal"]
        assert ids(s1, "cart") == []  # weekends only
        # the same instant in UTC, at the entrance: no bakery bread, the entrance card
        r = await c.get(store, headers=auth(TECH),
                        params={"at": "2026-12-07T08:30:00Z", "zone": "entrance"})
        assert ids(r.json(), "signage") == ["hero", "deal", "welcome"]
        # 17:30 UTC is 18:30 in Berlin: the night slide; s2 (UTC) still shows the hero
        r = await c.get(store, headers=auth(TECH), params={"at": "2026-12-07T17:30:00Z"})
        assert ids(r.json(), "signage") == ["night", "deal"]
        r = await c.get("/api/v1/stores/s2/screens/playlists", headers=auth(TECH),
                        params={"at": "2026-12-07T17:30:00Z"})
        assert r.json()["playlists"]["timezone"] == "UTC"
        assert ids(r.json(), "signage") == ["hero", "deal"]
        # Saturday morning: the carts' loop, no weekday hero
        r = await c.get(store, headers=auth(TECH), params={"at": "2026-12-12T10:00:00+01:00"})
        assert ids(r.json(), "cart") == ["clip"] and ids(r.json(), "signage") == ["deal"]
        r = await c.get(store, headers=auth(TECH), params={"at": "yesterday"})
        assert r.status_code == 422

        # publish: every store, then a selection; the manifest is signed and carries it
        r = await c.post(f"{URL}/publish", headers=auth(ADMIN), json={})
        assert r.status_code == 201, r.text
        assert r.json() == {"version": 2, "manifests": {"s1": 1, "s2": 1}, "failed": []}
        keys = {k["key_id"]: k["public_key"] for k in
                (await c.get("/api/v1/promotions/keys", headers=auth(TECH))).json()}
        manifest = verify_signed(json.loads(
            publisher.retained[topics.content_manifest("s1")].payload),
            load_public_keys(keys.values()))
        sent = ScreenPlaylists.model_validate(manifest["documents"]["playlists"])
        assert sent.version == 2 and sent.timezone == "Europe/Berlin"
        assert [p.name for p in sent.playlists] == ["signage-day", "carts-weekend", "entrance"]
        assert {(a["sha256"], a["size"], a["doc"]) for a in manifest["assets"]} == {
            (sha, SIZES[sha], "playlists") for sha in (HERO, PROMO_VIDEO, BAKERY, NIGHT)}
        r = await c.get("/api/v1/content/status", headers=auth(ADMIN),
                        params={"store_id": "s1"})
        assert r.json()[0]["parts"]["playlists"]["published"] == "2", r.json()

        assert (await c.put("/api/v1/regions/north/stores/s2", headers=auth(ADMIN))
                ).status_code == 200
        r = await c.post(f"{URL}/publish", headers=auth(ADMIN), json={"regions": ["north"]})
        assert r.json()["manifests"] == {"s2": 2}
        r = await c.post(f"{URL}/publish", headers=auth(ADMIN), json={"stores": ["s9"]})
        assert r.status_code == 422 and r.json()["type"].endswith("/unknown_store")
        r = await c.post(f"{URL}/publish", headers=auth(ADMIN), json={"regions": ["south"]})
        assert r.status_code == 422 and r.json()["type"].endswith("/empty_selection")
        r = await c.post(f"{URL}/publish", headers=auth(TECH), json={})
        assert r.status_code == 403


async def test_an_artifact_that_is_not_a_content_asset_is_refused(db_url: str) -> None:
    seed(db_url, {HERO, PROMO_VIDEO, BAKERY, NIGHT}, kind="firmware")
    async with api_client(create_app(make_settings(db_url),
                                     publisher=MemoryPublisher())) as c:
        assert "never uploaded as content assets" in await refused(c, spec(), "unknown_asset")
