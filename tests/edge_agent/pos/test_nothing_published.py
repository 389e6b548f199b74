"""A store whose HQ has published nothing yet: the cloud says so with its own problem type
and the till waits quietly (debug log, a metric, no warning) and keeps polling; real
failures still warn (issue 11). Real cloud app over ASGI, real SQLite."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.main import create_app
from cloud.publish import MemoryPublisher
from edge_agent.pos.cache import CacheMetrics, CatalogCache, CloudApi, PromotionCache, load_keys
from edge_agent.pos.pricebook import PriceBookCache
from protocols.clock import ManualClock
from protocols.problems import NOTHING_PUBLISHED
from tests.cloud.conftest import ADMIN, DEVICE, api_client, auth, make_settings

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

STORE = "S001"


def count(registry: CollectorRegistry, what: str, result: str) -> float:
    return registry.get_sample_value("storefleet_pos_cache_refresh_total",
                                     {"what": what, "result": result}) or 0.0


async def test_nothing_published_is_quiet_and_counted_then_the_till_picks_it_up(
        db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(make_settings(db_url), publisher=MemoryPublisher(), clock=ManualClock(),
                     registry=CollectorRegistry())
    async with api_client(app) as http:
        # The wire contract: 404, problem+json, the declared type, a clear title.
        r = await http.get(f"/api/v1/stores/{STORE}/promotions/snapshot", headers=auth(DEVICE))
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == NOTHING_PUBLISHED
        assert r.json()["title"] == "Nothing published yet"
        r = await http.get(f"/api/v1/stores/{STORE}/price-book", headers=auth(DEVICE))
        assert (r.status_code, r.json()["type"]) == (404, NOTHING_PUBLISHED)
        # An unknown version is a different answer: something is wrong there.
        r = await http.get(f"/api/v1/stores/{STORE}/promotions/snapshot",
                           params={"version": 9}, headers=auth(DEVICE))
        assert r.status_code == 404 and r.json()["type"] != NOTHING_PUBLISHED

        keys = load_keys([k["public_key"] for k in (await http.get(
            "/api/v1/promotions/keys", headers=auth(DEVICE))).json()])
        registry = CollectorRegistry()
        metrics = CacheMetrics(registry)
        promotions = PromotionCache(tmp_path / "promotions.json", store_id=STORE, keys=keys,
                                    metrics=metrics)
        books = PriceBookCache(tmp_path / "pricebook.json", store_id=STORE, keys=keys,
                               catalog=CatalogCache(tmp_path / "catalog.json"),
                               metrics=metrics)
        api = CloudApi("http://cloud", token=DEVICE,
                       transport=httpx.ASGITransport(app=app))
        try:
            caplog.set_level(logging.DEBUG, logger="edge_agent.pos")
            caplog.clear()  # the cloud's own start-up warnings are not the till's
            for _ in range(2):  # polled again: still quiet, counted each time
                assert not await promotions.refresh(api)
                assert not await books.refresh(api)
            assert count(registry, "promotions", "nothing_published") == 2
            assert count(registry, "pricebook", "nothing_published") == 2
            assert [r.getMessage() for r in caplog.records
                    if r.levelno >= logging.WARNING and r.name.startswith("edge_agent")] == []
            assert any("no promotions published yet" in r.getMessage()
                       for r in caplog.records if r.levelno == logging.DEBUG)

            # HQ publishes: the next poll installs it.
            r = await http.put("/api/v1/promotions/milk-10", headers=auth(ADMIN), json={
                "promotion": {"kind": "markdown", "percent_bp": 1000,
                              "scope": {"skus": ["milk"]}}})
            assert r.status_code == 200, r.text
            assert (await http.post("/api/v1/promotions/publish",
                                    headers=auth(ADMIN))).status_code == 200
            assert await promotions.refresh(api)
            assert promotions.version == 1
            assert count(registry, "promotions", "updated") == 1

            # A real failure (a token the cloud refuses) still warns and counts.
            caplog.clear()
            bad = CloudApi("http://cloud", token="not-a-token-at-all",
                           transport=httpx.ASGITransport(app=app))
            try:
                assert not await promotions.refresh(bad)
            finally:
                await bad.aclose()
            assert count(registry, "promotions", "http") == 1
            assert any(r.levelno == logging.WARNING and "refresh failed" in r.getMessage()
                       for r in caplog.records)
        finally:
            await api.aclose()
