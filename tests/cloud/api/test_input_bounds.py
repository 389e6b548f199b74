"""Bad requests are refused before they reach the database (issue 12 item 7): integers
past BIGINT, NUL in text, a body that is not UTF-8 JSON, content for a store the cloud
does not know; and the OpenAPI document declares the problem+json errors the API
answers. SQLite and PostgreSQL (PostgreSQL is where these were 500s)."""

from __future__ import annotations

import base64
import importlib
import pkgutil
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry

import cloud.api.routes
from cloud.api.json_body import JsonRoute
from cloud.api.problems import PROBLEM_JSON
from cloud.api.schemas import BIGINT_MAX
from cloud.db.models import Store
from cloud.main import API_PREFIX, create_app
from cloud.publish import MemoryPublisher
from protocols import topics
from protocols.clock import ManualClock
from tests.cloud.api.test_auth_and_errors import assert_problem
from tests.cloud.conftest import ADMIN, api_client, auth, make_settings, metric

ITEMS = [{"sku": "milk", "category": "dairy", "price": 199}]
TOO_BIG = BIGINT_MAX + 1


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(db_url: str, publisher: MemoryPublisher,
                 registry: CollectorRegistry) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(db_url, member_hash_key="bounds-member-hash-key-01")
    app = create_app(settings, registry=registry, publisher=publisher, clock=ManualClock())
    async with api_client(app) as c:
        with app.state.cloud.writer.begin() as s:
            s.add(Store(store_id="S001", online=True))
        c.headers.update(auth(ADMIN))
        yield c


async def _member(c: httpx.AsyncClient) -> str:
    r = await c.post("/api/v1/members", json={})
    assert r.status_code == 201, r.text
    member_id: str = r.json()["member_id"]
    return member_id


@pytest.mark.parametrize(("path", "where"), [
    ("/members/{member}/points?offset={n}", ["query", "offset"]),
    ("/price-books/versions/{n}", ["path", "version"]),
    ("/promotions/versions/{n}", ["path", "version"]),
    ("/stores/S001/price-book?version={n}", ["query", "version"]),
    ("/stores/S001/promotions/snapshot?version={n}", ["query", "version"]),
])
async def test_integers_past_bigint_are_refused_before_the_database(
    client: httpx.AsyncClient, path: str, where: list[str],
) -> None:
    c = client
    member = await _member(c)
    # Something published, so the routes get as far as the database.
    assert (await c.post("/api/v1/price-books", json={"items": ITEMS})).status_code == 201
    assert (await c.post("/api/v1/promotions/publish")).status_code == 200
    body = assert_problem(await c.get(API_PREFIX + path.format(member=member, n=TOO_BIG)),
                          422)
    assert body["errors"][0]["loc"] == where
    # The largest BIGINT is a fine number: an answer, not an error.
    r = await c.get(API_PREFIX + path.format(member=member, n=BIGINT_MAX))
    assert r.status_code in (200, 404), r.text


async def test_bodies_are_bounded_too(client: httpx.AsyncClient) -> None:
    c = client
    r = await c.put("/api/v1/tiers/gold", json={"min_points": TOO_BIG})
    assert assert_problem(r, 422)["errors"][0]["loc"] == ["body", "min_points"]
    r = await c.post("/api/v1/price-books",
                     json={"items": [{"sku": "gold-bar", "price": TOO_BIG}]})
    assert assert_problem(r, 422)["errors"][0]["loc"][-1] == "price"
    r = await c.post("/api/v1/campaigns", json={
        "name": "big", "trigger": "manual", "benefit": {"amount_off": TOO_BIG}})
    assert assert_problem(r, 422)["errors"][0]["loc"][-1] == "amount_off"


async def test_text_with_nul_and_bodies_that_are_not_utf8_json_are_refused(
    client: httpx.AsyncClient,
) -> None:
    c = client
    member = await _member(c)
    r = await c.post(f"/api/v1/members/{member}/points/earn",
                     json={"points": 5, "op_id": "goodwill\x00"})
    assert assert_problem(r, 422)["errors"][0]["loc"] == ["body", "op_id"]
    # An escaped lone surrogate parses with json.loads but has no UTF-8 form.
    r = await c.put("/api/v1/stores/S001/shadow/agent/desired",
                    content=b'{"state": {"note": "\\ud800"}}',
                    headers={"content-type": "application/json"})
    assert assert_problem(r, 422)["errors"][0]["type"] == "json_invalid"
    r = await c.get("/api/v1/stores/S001/shadow/agent")
    assert_problem(r, 404)  # nothing stored


async def test_event_cursors_past_bigint_or_with_nul_are_refused(
    client: httpx.AsyncClient,
) -> None:
    for cursor in (f"{TOO_BIG}:S001/e1", "1:S001/e\x001"):  # received_ms:store/id
        after = base64.urlsafe_b64encode(cursor.encode()).decode()
        r = await client.get("/api/v1/events", params={"after": after})
        assert assert_problem(r, 422)["type"].endswith("/bad_cursor")


async def test_a_price_book_for_an_unknown_store_is_refused(
    client: httpx.AsyncClient, publisher: MemoryPublisher, registry: CollectorRegistry,
) -> None:
    c = client
    r = await c.post("/api/v1/price-books", json={"store_id": "0", "items": ITEMS})
    assert "'0'" in assert_problem(r, 404)["detail"]
    assert publisher.on(topics.content_pricebook("0")) == []
    assert_problem(await c.get("/api/v1/price-books/versions/1"), 404)  # nothing stored
    assert metric(registry, "storefleet_api_rejected_total", reason="not_found") >= 1
    # A store whose box has connected, or one HQ put in a region, is known.
    r = await c.post("/api/v1/price-books", json={"store_id": "S001", "items": ITEMS})
    assert r.status_code == 201 and r.json()["announced"] == 1, r.text
    assert (await c.put("/api/v1/regions/north/stores/S002")).status_code == 200
    r = await c.post("/api/v1/price-books", json={"store_id": "S002", "items": ITEMS})
    assert r.status_code == 201, r.text
    assert len(publisher.on(topics.content_pricebook("S002"))) == 1


async def test_a_redemption_at_an_unknown_store_is_refused(client: httpx.AsyncClient) -> None:
    c = client
    member = await _member(c)
    r = await c.post("/api/v1/campaigns", json={
        "campaign_id": "cmp-1", "name": "five off", "trigger": "manual",
        "benefit": {"amount_off": 500}})
    assert r.status_code == 201, r.text
    r = await c.post("/api/v1/campaigns/cmp-1/coupons",
                     json={"member_id": member, "request_id": "r1"})
    code = r.json()["code"]
    r = await c.post(f"/api/v1/coupons/{code}/redeem", json={"store_id": "0"})
    assert_problem(r, 404)
    assert (await c.get(f"/api/v1/coupons/{code}")).json()["redeemed"] is False
    r = await c.post(f"/api/v1/coupons/{code}/redeem", json={"store_id": "S001"})
    assert r.status_code == 200 and r.json()["redeemed"] is True, r.text


# Routes a signature authenticates instead of a token (a payment gateway's notice)
SIGNED_NOT_TOKEN = frozenset({("post", "/api/v1/order-payments/notify")})


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_openapi_declares_problem_json_errors(client: httpx.AsyncClient) -> None:
    spec: dict[str, Any] = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    assert "Problem" in schemas and "HTTPValidationError" not in schemas
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    errors = 0
    for path, item in spec["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            for status, response in responses.items():
                if status[0] in "45":
                    assert response["content"] == problem, (method, path, status)
                    errors += 1
            if "requestBody" in op:
                assert "400" in responses and "422" in responses, (method, path)
            if (method, path) in SIGNED_NOT_TOKEN:  # no role to lack: no 403
                assert "401" in responses and "403" not in responses, (method, path)
            elif path.startswith(API_PREFIX):
                assert {"401", "403"} <= responses.keys(), (method, path)
    assert errors > 100
    ops = spec["paths"]
    assert "404" in ops["/api/v1/price-books"]["post"]["responses"]
    assert "503" in ops["/api/v1/stores/{store_id}/commands"]["post"]["responses"]
    assert "503" in ops["/api/v1/members/lookup"]["post"]["responses"]
    assert "503" in ops["/healthz"]["get"]["responses"]


def test_every_routes_module_parses_json_strictly() -> None:
    """Each routes module's router, present and future (FastAPI keeps a route's class
    when its router is included in another, so this cannot be set once in cloud.main)."""
    modules = [importlib.import_module(f"cloud.api.routes.{m.name}")
               for m in pkgutil.iter_modules(cloud.api.routes.__path__)]
    routes = [(m.__name__, r) for m in modules if hasattr(m, "router")
              for r in m.router.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 50
    assert [(name, r.path) for name, r in routes if not isinstance(r, JsonRoute)] == []
