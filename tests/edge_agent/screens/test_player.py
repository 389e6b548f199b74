"""The box's screen player and its HTTP side (decision 0051), on a real content-cache
directory and a real promotion snapshot: windows in the document's time zone, zones,
cards only for live promotions (the others left out and counted), only the playlists'
assets served with their sniffed type, and an invalid document refused while the
loaded one stays."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from edge_agent.modules.content import AppliedContent
from edge_agent.screens.cards import money
from edge_agent.screens.player import PlaylistsRefused, ScreenPlayer, ScreensMetrics
from edge_agent.screens.web import media_type, screens_app
from pricing import PromotionSnapshot
from protocols.content import ContentManifest

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 16
IMG, VID = "1" * 64, "2" * 64
# Monday 2026-12-07 08:30 UTC = 09:30 in Berlin
MONDAY = dt.datetime(2026, 12, 7, 8, 30, tzinfo=dt.UTC)
ENDED_MS = int(dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp() * 1000)


def snapshot() -> PromotionSnapshot:
    return PromotionSnapshot.model_validate({"version": 3, "currency": "EUR", "promotions": [
        {"kind": "markdown", "id": "P1", "name": "Apples", "amount_off": 150,
         "scope": {"skus": ["apple"]}},
        {"kind": "markdown", "id": "OLD", "percent_bp": 500, "scope": {"skus": ["x"]},
         "conditions": {"valid_until_ms": ENDED_MS}},
        {"kind": "markdown", "id": "MORNING", "name": "Early", "percent_bp": 1000,
         "scope": {"skus": ["x"]}, "conditions": {"time_from_min": 420,
                                                  "time_until_min": 540}},
    ]})


def applied(tmp_path: Path, doc: dict[str, Any], version: int = 1) -> AppliedContent:
    cas = tmp_path / "cas"
    cas.mkdir(exist_ok=True)
    (cas / IMG).write_bytes(PNG)
    (cas / VID).write_bytes(MP4)
    manifest = ContentManifest(store_id="S1", version=version, created_ms=0,
                               documents={"playlists": doc})
    return AppliedContent(manifest=manifest, applied_ms=0, signed={}, cas=cas)


def document(version: int = 1) -> dict[str, Any]:
    return {"version": version, "timezone": "Europe/Berlin", "playlists": [
        {"name": "wall", "surface": "signage", "items": [
            {"id": "img", "kind": "image", "sha256": IMG,
             "windows": [{"days": [1], "start": "09:00", "end": "10:00"}]},
            {"id": "vid", "kind": "video", "sha256": VID, "zones": ["bakery"]},
            {"id": "apples", "kind": "card", "title": "Fresh", "promotion_id": "P1"},
            {"id": "old", "kind": "card", "title": "Gone", "promotion_id": "OLD"},
            {"id": "early", "kind": "card", "title": "Early", "promotion_id": "MORNING"},
            {"id": "ghost", "kind": "card", "title": "?", "promotion_id": "NOPE"}]},
        {"name": "idle", "surface": "cart", "zones": ["bakery"], "items": [
            {"id": "cart-img", "kind": "image", "sha256": IMG}]}]}


def player(registry: CollectorRegistry,
           promotions: PromotionSnapshot | None = None) -> ScreenPlayer:
    return ScreenPlayer(store_id="S1", metrics=ScreensMetrics(registry),
                        promotions=lambda: promotions)


def ids(body: dict[str, Any]) -> list[str]:
    return [i["id"] for i in body["items"]]


def test_windows_zones_and_live_cards(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    p = player(registry, snapshot())
    assert p.now(surface="signage", zone=None, at=MONDAY)["items"] == []  # nothing yet
    p.load(applied(tmp_path, document()))
    now = p.now(surface="signage", zone=None, at=MONDAY)
    assert now["local_time"] == "2026-12-07T09:30:00+01:00"
    # 09:30 local: the image's window and the morning card (07:00-09:00) is over
    assert ids(now) == ["img", "apples"]
    assert now["items"][0]["url"] == f"/screens/asset/{IMG}"
    assert now["items"][1]["card"] == {"promotion_id": "P1", "name": "Apples",
                                       "offer": "1.50 EUR off", "valid_until_ms": None,
                                       "snapshot_version": 3}
    skipped = {r: registry.get_sample_value("storefleet_screens_cards_skipped_total",
                                            {"reason": r}) for r in ("not_live", "unknown")}
    assert skipped == {"not_live": 2.0, "unknown": 1.0}
    early = MONDAY - dt.timedelta(hours=1)  # 08:30 local: the morning card, no image
    assert ids(p.now(surface="signage", zone="bakery", at=early)) == [
        "vid", "apples", "early"]
    assert ids(p.now(surface="cart", zone="bakery", at=MONDAY)) == ["cart-img"]
    assert ids(p.now(surface="cart", zone="fruit", at=MONDAY)) == []
    # without a till snapshot no card at all
    bare = player(CollectorRegistry())
    bare.load(applied(tmp_path, document()))
    assert ids(bare.now(surface="signage", zone=None, at=MONDAY)) == ["img"]


def test_an_invalid_document_is_refused_and_the_loaded_one_stays(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    p = player(registry)
    p.load(applied(tmp_path, document()))
    bad = document(2)
    bad["playlists"][0]["items"][0]["windows"][0]["end"] = "08:00"
    with pytest.raises(PlaylistsRefused, match="ends before it starts"):
        p.load(applied(tmp_path, bad, version=2))
    assert p.version == 1
    assert registry.get_sample_value("storefleet_screens_documents_total",
                                     {"result": "invalid"}) == 1.0
    assert p.load(applied(tmp_path, document(3), version=3)) is not None
    assert p.version == 3
    no_playlists = applied(tmp_path, document())
    assert p.load(AppliedContent(manifest=no_playlists.manifest.model_copy(
        update={"documents": {}}), applied_ms=0, signed={}, cas=no_playlists.cas)) is None
    assert p.version == 3


async def test_http_serves_the_list_and_only_the_playlists_assets(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    p = player(registry, snapshot())
    p.load(applied(tmp_path, document()))
    (tmp_path / "cas" / ("3" * 64)).write_bytes(PNG)  # in the cache, not in the playlists
    app = screens_app(p, now=lambda: MONDAY, registry=registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://box") as c:
        r = await c.get("/screens/now", params={"zone": "bakery"})
        assert r.status_code == 200 and ids(r.json()) == ["img", "vid", "apples"]
        r = await c.get(f"/screens/asset/{VID}")
        assert r.status_code == 200 and r.content == MP4
        assert r.headers["content-type"] == "video/mp4"
        assert "immutable" in r.headers["cache-control"]
        assert (await c.get(f"/screens/asset/{'3' * 64}")).status_code == 404
        (tmp_path / "cas" / IMG).unlink()  # evicted under a newer manifest
        assert (await c.get(f"/screens/asset/{IMG}")).status_code == 404
        assert (await c.get("/screens/now", params={"surface": "tv"})).status_code == 400
        assert (await c.get("/screens/now", params={"zone": "../x"})).status_code == 400
        r = await c.get("/signage")
        assert r.status_code == 200 and "/screens/static/signage.js" in r.text
        assert (await c.get("/screens/static/signage.js")).status_code == 200
    assert registry.get_sample_value("storefleet_screens_bad_requests_total",
                                     {"reason": "unknown_asset"}) == 2.0


def test_media_types_and_money() -> None:
    assert media_type(PNG) == "image/png" and media_type(MP4) == "video/mp4"
    assert media_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert media_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert media_type(b"hello") == "application/octet-stream"
    assert money(5, "EUR") == "0.05 EUR" and money(1200, "JPY") == "1200 JPY"
