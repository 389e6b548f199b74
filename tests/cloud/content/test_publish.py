"""Publishing content manifests (decision 0046) through the API on SQLite and PostgreSQL:
stores selected like rollouts (stores, regions, groups), one signed manifest per store
with a rising version, the store's price book version and the assets' sizes, retained on
``content/manifest``; refusals are 4xx problems; a ``content_status`` report stored by
the ingest hook shows the store converged, in the API and the gauge. Also measures one
publish to 1,000 stores (the figure is in decision 0046)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from cloud.content.service import ContentHook, ContentMetrics
from cloud.db import make_engine, upgrade
from cloud.db.engine import make_session_factory, writer
from cloud.db.models import Store
from cloud.db.models_artifacts import Artifact
from cloud.main import create_app
from cloud.promotions.signing import SnapshotSigner, verify_document
from cloud.publish import MemoryPublisher
from protocols import topics
from protocols.messages import Event
from tests.cloud.conftest import ADMIN, TECH, api_client, auth, make_settings, metric

ASSET = "a5" * 32
AGENT = "a9" * 32


def seed(db_url: str, stores: list[str]) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with make_session_factory(writer(engine)).begin() as session:
            session.add_all(Store(store_id=s) for s in stores)
            session.add(Artifact(sha256=ASSET, kind="asset", target="content",
                                 version="jingle-1", size=4096, created_ms=0, signed={}))
            session.add(Artifact(sha256=AGENT, kind="agent", target="agent", version="9.1",
                                 size=1, created_ms=0, signed={}))
    finally:
        engine.dispose()


async def publish(c: httpx.AsyncClient, status: int, **body: Any) -> dict[str, Any]:
    r = await c.post("/api/v1/content/publish", headers=auth(ADMIN), json={
        "documents": {"schedule": {"version": "s1"}}, **body})
    assert r.status_code == status, r.text
    return dict(r.json())


async def test_publish_signs_one_manifest_per_selected_store(db_url: str) -> None:
    seed(db_url, ["s1", "s2", "s3", "s4"])
    publisher, signer, registry = MemoryPublisher(), SnapshotSigner.generate(), \
        CollectorRegistry()
    app = create_app(make_settings(db_url), publisher=publisher, signer=signer,
                     registry=registry)
    async with api_client(app) as c:
        assert (await c.put("/api/v1/regions/north/stores/s3",
                            headers=auth(ADMIN))).status_code == 200
        assert (await c.put("/api/v1/groups/pilot/stores/s1",
                            headers=auth(ADMIN))).status_code == 200
        r = await c.post("/api/v1/price-books", headers=auth(ADMIN), json={
            "currency": "EUR", "items": [{"sku": "apple", "price": 120}]})
        assert r.status_code == 201, r.text
        book = r.json()["version"]

        out = await publish(c, 201, stores=["s2"], regions=["north"], groups=["pilot"],
                            assets=[{"sha256": ASSET, "name": "jingle.wav"}])
        assert out["versions"] == {"s2": 1, "s1": 1, "s3": 1} and out["failed"] == []
        again = await publish(c, 201, stores=["s1", "s1"])  # a store named twice: once
        assert again["versions"] == {"s1": 2}  # versions rise per store

        retained = publisher.retained[topics.content_manifest("s1")]
        assert retained.qos == 1
        payload = verify_document(json.loads(retained.payload), signer.trusted())
        assert payload["store_id"] == "s1" and payload["version"] == 2
        assert payload["price_book_version"] == book and payload["assets"] == []
        first = verify_document(json.loads(
            publisher.retained[topics.content_manifest("s3")].payload), signer.trusted())
        assert first["assets"] == [{"sha256": ASSET, "size": 4096, "name": "jingle.wav",
                                    "doc": ""}]
        assert first["documents"] == {"schedule": {"version": "s1"}}
        assert topics.content_manifest("s4") not in publisher.retained

        # refusals: an unknown asset, an artifact that is no asset, an empty selection,
        # a role that may not
        assert (await publish(c, 404, stores=["s1"], assets=[
            {"sha256": "00" * 32, "name": "x"}]))["type"].endswith("unknown_asset")
        assert (await publish(c, 422, stores=["s1"], assets=[
            {"sha256": AGENT, "name": "x"}]))["type"].endswith("not_an_asset")
        await publish(c, 422, regions=["nowhere"])
        await publish(c, 422)
        r = await c.post("/api/v1/content/publish", headers=auth(TECH), json={"stores": ["s1"]})
        assert r.status_code == 403
        # an asset is no rollout's artifact: it would reach no installer on the box
        r = await c.post("/api/v1/rollouts", headers=auth(ADMIN),
                         json={"sha256": ASSET, "stores": ["s1"], "canary_size": 1})
        assert r.status_code == 422 and "content manifest" in r.json()["detail"], r.text

        # s3 reports manifest 1 applied: converged; s1 (published 2) is still pending
        hook = ContentHook(app.state.content.metrics)
        with app.state.cloud.writer.begin() as session:
            hook(session, Event(id="e1", kind="content_status", store_id="s3", seq=1,
                                ts=5_000, data={"version": 1, "applied_ms": 4_000,
                                                "price_book_version": book,
                                                "schedule_version": "s1",
                                                "assets_present": 1}), 6_000)
            # an older report arriving late changes nothing
            hook(session, Event(id="e0", kind="content_status", store_id="s3", seq=0,
                                ts=1_000, data={}), 6_000)
        r = await c.get("/api/v1/content/status", headers=auth(TECH))
        rows = {row["store_id"]: row for row in r.json()}
        assert {s: row["state"] for s, row in rows.items()} == {
            "s1": "pending", "s2": "pending", "s3": "converged", "s4": "unpublished"}
        assert rows["s3"]["applied_version"] == 1 and rows["s3"]["applied_ms"] == 4_000
        assert rows["s3"]["schedule_version"] == "s1"
        r = await c.get("/api/v1/content/status", headers=auth(TECH),
                        params={"store_id": "s1"})
        assert [row["published_version"] for row in r.json()] == [2]
        assert metric(registry, "storefleet_content_stores", state="converged") == 1
        assert metric(registry, "storefleet_content_reports_total", result="stale") == 1


async def test_one_publish_reaches_a_thousand_stores(tmp_path: Any) -> None:
    db_url = f"sqlite:///{tmp_path / 'cloud.db'}"
    stores = [f"s{i:04d}" for i in range(1000)]
    seed(db_url, stores)
    publisher = MemoryPublisher()
    app = create_app(make_settings(db_url), publisher=publisher, registry=CollectorRegistry())
    async with api_client(app) as c:
        assert isinstance(app.state.content.metrics, ContentMetrics)
        started = time.monotonic()
        out = await publish(c, 201, stores=stores,
                            assets=[{"sha256": ASSET, "name": "jingle.wav"}])
        took = time.monotonic() - started
    assert out["stores"] == 1000 and len(publisher.retained) == 1000
    # Build, sign, record and hand over 1,000 manifests: ~1 s here; 20 s only catches a
    # per-store query or a quadratic slip on a loaded CI machine.
    assert took < 20, took
