"""Placing online orders over the API: routing to the nearest store with stock, stock
reservation, idempotency keys, 409 problem+json, dispatch to the store over MQTT."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.orders.routing import haversine_m
from cloud.publish import MemoryPublisher
from protocols import topics
from protocols.codec import decode
from protocols.orders import OrderDispatch
from tests.cloud.conftest import ADMIN, DEVICE, MANAGER, TECH, auth, metric

# Three stores along a line of latitude in Berlin; the shopper stands at the first.
STORES = {"S-mitte": (52.5200, 13.4050), "S-east": (52.5200, 13.5000),
          "S-far": (52.5200, 14.0000)}
SHOPPER = {"lat": 52.5200, "lon": 13.4000}


def order_body(**kw: Any) -> dict[str, Any]:
    body = {"fulfilment": "pickup", "lines": [{"sku": "milk", "qty": 2},
                                              {"sku": "bread", "qty": 1}],
            "customer": {"name": "Ada", "phone": "+49 30 1234"}, **SHOPPER}
    body.update(kw)
    return body


async def setup_stores(client: httpx.AsyncClient, stock: dict[str, dict[str, int]], *,
                       prices: bool = True) -> None:
    if prices:  # orders are priced at placement (decision 0067)
        r = await client.post("/api/v1/price-books", headers=auth(ADMIN),
                              json={"items": [{"sku": "milk", "price": 200},
                                              {"sku": "bread", "price": 250},
                                              {"sku": "cola", "price": 150}]})
        assert r.status_code == 201, r.text
    for store, (lat, lon) in STORES.items():
        r = await client.put(f"/api/v1/stores/{store}/location", headers=auth(ADMIN),
                             json={"lat": lat, "lon": lon})
        assert r.status_code == 200, r.text
    for store, levels in stock.items():
        r = await client.put(f"/api/v1/stores/{store}/stock", headers=auth(MANAGER),
                             json={"levels": levels})
        assert r.status_code == 200, r.text


def test_haversine_known_distance() -> None:
    # Paris (Notre-Dame) to London (Charing Cross): 343.5 km great-circle.
    assert haversine_m(48.8530, 2.3499, 51.5073, -0.1277) == pytest.approx(343_500, rel=0.005)
    assert haversine_m(10, 20, 10, 20) == 0


async def test_nearest_store_with_all_lines_wins_and_stock_is_reserved(
    client: httpx.AsyncClient, publisher: MemoryPublisher, registry: CollectorRegistry
) -> None:
    # The nearest store lacks bread; the next one has everything; the far one too.
    await setup_stores(client, {"S-mitte": {"milk": 10, "bread": 0},
                                "S-east": {"milk": 5, "bread": 3},
                                "S-far": {"milk": 50, "bread": 50}})
    key = {"Idempotency-Key": "k-0001-abc"}
    r = await client.post("/api/v1/orders", headers={**auth(ADMIN), **key}, json=order_body())
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["store_id"] == "S-east" and order["status"] == "placed"
    assert 6_000 < order["distance_m"] < 7_000  # 0.1 degree of longitude at 52.5 N
    assert order["dispatch"] == "published"
    sent = publisher.on(topics.orders("S-east"))
    assert len(sent) == 1 and sent[0].qos == 1 and not sent[0].retain
    msg = decode(sent[0].payload, OrderDispatch)
    assert msg.order_id == order["order_id"]
    assert [(ln.sku, ln.qty) for ln in msg.lines] == [("milk", 2), ("bread", 1)]
    stock = (await client.get("/api/v1/stores/S-east/stock", headers=auth(TECH))).json()
    assert stock["levels"] == {"bread": 2, "milk": 3}

    # A retry with the same key returns the same order, reserves nothing more.
    again = await client.post("/api/v1/orders", headers={**auth(ADMIN),
                                                          "Idempotency-Key": "k-0001-abc"},
                              json=order_body())
    assert again.status_code == 200 and again.json()["order_id"] == order["order_id"]
    assert len(publisher.on(topics.orders("S-east"))) == 1
    stock = (await client.get("/api/v1/stores/S-east/stock", headers=auth(TECH))).json()
    assert stock["levels"] == {"bread": 2, "milk": 3}

    # The same key with another basket is a conflict, not a second order.
    clash = await client.post("/api/v1/orders", headers={**auth(ADMIN),
                                                          "Idempotency-Key": "k-0001-abc"},
                              json=order_body(lines=[{"sku": "milk", "qty": 1}]))
    assert clash.status_code == 409
    assert clash.json()["type"].endswith("/idempotency_conflict")
    assert metric(registry, "storefleet_orders_placed_total", fulfilment="pickup") == 1


async def test_stock_runs_out_then_routes_further_then_409(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    await setup_stores(client, {"S-mitte": {"milk": 2, "bread": 1},
                                "S-far": {"milk": 2, "bread": 1}})
    stores = []
    for n in range(3):
        r = await client.post("/api/v1/orders", headers=auth(MANAGER),
                              json=order_body(idempotency_key=f"key-run-{n:04d}"))
        stores.append((r.status_code, r.json().get("store_id")))
    assert stores[:2] == [(201, "S-mitte"), (201, "S-far")]
    assert stores[2][0] == 409
    r = await client.post("/api/v1/orders", headers=auth(MANAGER),
                          json=order_body(idempotency_key="key-run-9999"))
    problem = r.json()
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["type"].endswith("/no_store_available")
    assert "bread x1" in problem["detail"] and "milk x2" in problem["detail"]
    assert metric(registry, "storefleet_orders_rejected_total", reason="no_store") == 2


async def test_concurrent_orders_never_oversell(client: httpx.AsyncClient) -> None:
    await setup_stores(client, {"S-mitte": {"milk": 6, "bread": 3}})
    results = await asyncio.gather(*(
        client.post("/api/v1/orders", headers=auth(ADMIN),
                    json=order_body(idempotency_key=f"race-key-{n:04d}"))
        for n in range(8)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 201, 201, 409, 409, 409, 409, 409]
    stock = (await client.get("/api/v1/stores/S-mitte/stock", headers=auth(ADMIN))).json()
    assert stock["levels"] == {"bread": 0, "milk": 0}


async def test_bad_requests_and_roles(client: httpx.AsyncClient,
                                      publisher: MemoryPublisher) -> None:
    await setup_stores(client, {"S-mitte": {"milk": 9, "bread": 9}})
    no_key = await client.post("/api/v1/orders", headers=auth(ADMIN), json=order_body())
    assert no_key.status_code == 422
    delivery = await client.post("/api/v1/orders", headers=auth(ADMIN),
                                 json=order_body(fulfilment="delivery",
                                                 idempotency_key="deliv-no-addr"))
    assert delivery.status_code == 422 and "address" in delivery.json()["detail"]
    bad_qty = await client.post("/api/v1/orders", headers=auth(ADMIN),
                                json=order_body(idempotency_key="bad-qty-0001",
                                                lines=[{"sku": "milk", "qty": 0}]))
    assert bad_qty.status_code == 422
    assert (await client.post("/api/v1/orders", headers=auth(TECH),
                              json=order_body(idempotency_key="tech-key-01"))).status_code == 403
    assert (await client.put("/api/v1/stores/S-x/location", headers=auth(MANAGER),
                             json={"lat": 1, "lon": 1})).status_code == 403
    assert (await client.put("/api/v1/stores/S-x/location", headers=auth(ADMIN),
                             json={"lat": 91, "lon": 1})).status_code == 422
    # The broker refuses: the order exists, marked failed; a re-dispatch publishes it.
    publisher.fail = True
    r = await client.post("/api/v1/orders", headers=auth(ADMIN),
                          json=order_body(idempotency_key="pub-fail-01"))
    assert r.status_code == 201 and r.json()["dispatch"] == "failed"
    order_id = r.json()["order_id"]
    assert (await client.post(f"/api/v1/orders/{order_id}/dispatch",
                              headers=auth(TECH))).status_code == 503
    publisher.fail = False
    r = await client.post(f"/api/v1/orders/{order_id}/dispatch", headers=auth(TECH))
    assert r.status_code == 200 and r.json()["dispatch"] == "published"
    got = await client.get(f"/api/v1/orders/{order_id}", headers=auth(MANAGER))
    assert got.json()["dispatch"] == "published"
    assert (await client.get("/api/v1/orders/nope", headers=auth(ADMIN))).status_code == 404
    assert (await client.get("/api/v1/stores/S-mitte/coupon-ranges",
                             headers=auth(DEVICE))).status_code == 200
