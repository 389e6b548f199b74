"""Store-scoped tokens (decision 0015): a store-manager or device token acts only for its
stores, a region-scoped field-tech only for the stores of its regions; anything else is
403 problem+json ``forbidden_store``, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.db.models import Device, Store
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from protocols.clock import ManualClock
from tests.cloud.conftest import (
    ADMIN,
    DEVICE,
    DEVICE_S1,
    MANAGER,
    MANAGER_S1,
    TECH_NORTH,
    api_client,
    auth,
    make_settings,
    metric,
)

STORES = {"s1": (52.52, 13.40), "s2": (52.52, 13.41), "s3": (52.52, 13.42)}


def forbidden(resp: httpx.Response) -> None:
    assert resp.status_code == 403, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["type"].endswith("/forbidden_store")


@pytest.fixture
async def client(db_url: str, registry: CollectorRegistry) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(db_url), registry=registry, publisher=MemoryPublisher(),
                     clock=ManualClock())
    async with api_client(app) as c:
        with app.state.cloud.writer.begin() as s:
            for store in STORES:
                s.add(Store(store_id=store, online=True))
                s.add(Device(store_id=store, device_id=f"dev-{store}", kind="printer",
                             online=True))
        c.app = app  # type: ignore[attr-defined]
        admin = auth(ADMIN)
        for store, (lat, lon) in STORES.items():
            assert (await c.put(f"/api/v1/stores/{store}/location", headers=admin,
                                json={"lat": lat, "lon": lon})).status_code == 200
        # s3 is the only store of region "north" (TECH_NORTH's scope).
        assert (await c.put("/api/v1/regions/north/stores/s3", headers=admin)).status_code == 200
        yield c


async def place_order_at(c: httpx.AsyncClient, store: str, key: str) -> str:
    """Only ``store`` has stock, so routing must pick it."""
    r = await c.post("/api/v1/price-books", headers=auth(ADMIN),  # orders are priced
                     json={"items": [{"sku": "milk", "price": 200}]})
    assert r.status_code == 201, r.text
    r = await c.put(f"/api/v1/stores/{store}/stock", headers=auth(ADMIN),
                    json={"levels": {"milk": 5}})
    assert r.status_code == 200, r.text
    lat, lon = STORES[store]
    r = await c.post("/api/v1/orders", headers={**auth(ADMIN), "Idempotency-Key": key},
                     json={"fulfilment": "pickup", "lines": [{"sku": "milk", "qty": 1}],
                           "customer": {"name": "Ada", "phone": "1"}, "lat": lat, "lon": lon})
    assert r.status_code == 201 and r.json()["store_id"] == store, r.text
    return str(r.json()["order_id"])


async def test_store_manager_token_is_bound_to_its_store(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    c, mine, h = client, "s1", auth(MANAGER_S1)
    # Its own store works ...
    assert (await c.get(f"/api/v1/stores/{mine}", headers=h)).status_code == 200
    assert (await c.get(f"/api/v1/stores/{mine}/devices", headers=h)).status_code == 200
    assert (await c.put(f"/api/v1/stores/{mine}/stock", headers=h,
                        json={"levels": {"milk": 1}})).status_code == 200
    assert (await c.get(f"/api/v1/stores/{mine}/stock", headers=h)).status_code == 200
    # ... another one is 403 whether the id is in the path or the query.
    forbidden(await c.get("/api/v1/stores/s2", headers=h))
    forbidden(await c.get("/api/v1/stores/s2/devices", headers=h))
    forbidden(await c.put("/api/v1/stores/s2/stock", headers=h, json={"levels": {"milk": 1}}))
    forbidden(await c.get("/api/v1/stores/s2/stock", headers=h))
    forbidden(await c.get("/api/v1/stores/s2/shadow/agent", headers=h))
    forbidden(await c.get("/api/v1/devices", headers=h, params={"store_id": "s2"}))
    forbidden(await c.get("/api/v1/events", headers=h, params={"store_id": "s2"}))
    forbidden(await c.get("/api/v1/orders", headers=h, params={"store_id": "s2"}))
    forbidden(await c.get("/api/v1/coupon-flags", headers=h, params={"store_id": "s2"}))
    forbidden(await c.get("/api/v1/promotions/mismatches", headers=h,
                          params={"store_id": "s2"}))
    # Lists without a store id show only its stores.
    assert [s["store_id"] for s in (await c.get("/api/v1/stores", headers=h)).json()] == [mine]
    assert {d["store_id"] for d in (await c.get("/api/v1/devices", headers=h)).json()} == {mine}
    # The legacy unscoped manager token still sees the chain (backward compatible).
    assert len((await c.get("/api/v1/stores", headers=auth(MANAGER))).json()) == 3
    assert metric(registry, "storefleet_api_rejected_total", reason="forbidden_store") == 10


async def test_orders_and_commands_are_checked_by_their_store(client: httpx.AsyncClient) -> None:
    c = client
    theirs = await place_order_at(c, "s2", "key-scope-0002")
    mine = await place_order_at(c, "s1", "key-scope-0001")
    h = auth(MANAGER_S1)
    forbidden(await c.get(f"/api/v1/orders/{theirs}", headers=h))
    assert (await c.get(f"/api/v1/orders/{mine}", headers=h)).status_code == 200
    assert [o["order_id"] for o in (await c.get("/api/v1/orders", headers=h)).json()] == [mine]
    # A region-scoped technician: commands and re-dispatch only for the region's stores.
    t = auth(TECH_NORTH)
    forbidden(await c.post("/api/v1/stores/s2/commands", headers=t, json={"name": "ping"}))
    forbidden(await c.post(f"/api/v1/orders/{theirs}/dispatch", headers=t))
    r = await c.post("/api/v1/stores/s3/commands", headers=t, json={"name": "ping"})
    assert r.status_code == 202, r.text
    cmd_id = r.json()["cmd_id"]
    assert (await c.get(f"/api/v1/commands/{cmd_id}", headers=t)).status_code == 200
    forbidden(await c.get(f"/api/v1/commands/{cmd_id}", headers=h))
    # Moving s2 into the region extends the technician's reach at once.
    assert (await c.put("/api/v1/regions/north/stores/s2",
                        headers=auth(ADMIN))).status_code == 200
    assert (await c.post(f"/api/v1/orders/{theirs}/dispatch", headers=t)).status_code == 200


async def test_device_token_ranges_snapshots_and_redemptions(client: httpx.AsyncClient) -> None:
    c, d = client, auth(DEVICE_S1)
    assert (await c.get("/api/v1/stores/s1/coupon-ranges", headers=d)).status_code == 200
    forbidden(await c.get("/api/v1/stores/s2/coupon-ranges", headers=d))
    # 403 before 404: a scoped token learns nothing about other stores' publications.
    assert (await c.get("/api/v1/stores/s1/promotions/snapshot", headers=d)).status_code == 404
    forbidden(await c.get("/api/v1/stores/s2/promotions/snapshot", headers=d))
    # A store id in the body: redeeming "for" another store is refused.
    forbidden(await c.post("/api/v1/coupons/any-code/redeem", headers=d,
                           json={"store_id": "s2"}))
    # Its own store (named, or implied by a one-store token) reaches the coupon check.
    for body in ({"store_id": "s1"}, {}):
        r = await c.post("/api/v1/coupons/any-code/redeem", headers=d, json=body)
        assert r.status_code == 404, r.text
    # The legacy device token is unchanged.
    assert (await c.get("/api/v1/stores/s2/coupon-ranges",
                        headers=auth(DEVICE))).status_code == 200


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "s2" if m[1] == "store_id" else "x1", path)


async def test_every_route_with_a_store_in_its_path_refuses_other_stores(
    client: httpx.AsyncClient,
) -> None:
    """Future routes are covered too: the check sits on the whole /api/v1 router."""
    paths: dict[str, Any] = (await client.get("/openapi.json")).json()["paths"]
    routes = [(method, path) for path, ops in paths.items() if "{store_id}" in path
              for method in ops]
    assert len(routes) >= 12
    for method, path in routes:
        for token in (MANAGER_S1, DEVICE_S1, TECH_NORTH):
            resp = await client.request(method, _fill(path), headers=auth(token), json={})
            assert resp.status_code == 403, (method, path, resp.text)
            assert resp.json()["type"].endswith("/forbidden_store")


async def test_openapi_documents_the_scope(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert "bound to stores" in doc["components"]["securitySchemes"]["HTTPBearer"]["description"]
    op = doc["paths"]["/api/v1/stores/{store_id}/stock"]["put"]
    assert "forbidden_store" in op["responses"]["403"]["description"]
