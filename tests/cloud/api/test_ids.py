"""Every id the API takes is the one id type (protocols.ids, decision 0031): an id with
path characters is refused with a 422 problem+json naming it, never stored, never a 500,
and the OpenAPI document declares the id rule on every id."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.db.models import Store
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from protocols.artifacts import TARGET_PATTERN
from protocols.clock import ManualClock
from protocols.ids import ID_PATTERN, SIGNED_CODE_PATTERN
from tests.cloud.api.test_auth_and_errors import assert_problem
from tests.cloud.conftest import ADMIN, api_client, auth, make_settings
from tests.cloud.orders.test_orders_api import order_body

BAD_IDS = ["../../x y", "a b", ".hidden", "x" * 65, "a%2Fb"]
# Idempotency keys and sale references are composed keys ("spend:<event id>"), not ids.
NOT_IDS = frozenset({"op_id", "request_id", "sale_id", "idempotency_key"})
SIGNED_CODES = frozenset({("JoinRequest", "code"), ("CounterLookup", "code")})


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(db_url, member_hash_key="ids-member-hash-key-0001"),
                     registry=CollectorRegistry(), publisher=MemoryPublisher(),
                     clock=ManualClock())
    async with api_client(app) as c:
        with app.state.cloud.writer.begin() as s:
            s.add(Store(store_id="S001", online=True))
        c.headers.update(auth(ADMIN))
        yield c


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_an_order_line_sku_with_path_characters_is_a_422(
        client: httpx.AsyncClient, bad: str) -> None:
    body = order_body(lines=[{"sku": bad, "qty": 1}])
    problem = assert_problem(await client.post("/api/v1/orders", json=body), 422)
    assert any(e["loc"][-1] == "sku" for e in problem["errors"])


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_a_price_book_sku_with_path_characters_is_a_422(
        client: httpx.AsyncClient, bad: str) -> None:
    body = {"items": [{"sku": bad, "category": "dairy", "price": 199}]}
    problem = assert_problem(await client.post("/api/v1/price-books", json=body), 422)
    assert any(e["loc"][-1] == "sku" for e in problem["errors"])


@pytest.mark.parametrize("bad", ["a b", ".hidden", "x" * 65, "a:b c"])
@pytest.mark.parametrize("route", ["/api/v1/stores/{}", "/api/v1/stores/{}/shadow/agent",
                                   "/api/v1/events?store_id={}", "/api/v1/members/{}"])
async def test_path_and_query_ids_with_path_characters_are_a_422(
        client: httpx.AsyncClient, route: str, bad: str) -> None:
    assert_problem(await client.get(route.format(bad)), 422)


def _patterns(schema: dict[str, Any], components: dict[str, Any]) -> list[str | None]:
    if "$ref" in schema:
        return _patterns(components[schema["$ref"].rsplit("/", 1)[-1]], components)
    if "anyOf" in schema:
        return [p for s in schema["anyOf"] if s.get("type") != "null"
                for p in _patterns(s, components)]
    return [schema.get("pattern")]


def _is_id(name: str) -> bool:
    return (name.endswith("_id") or name in ("sku", "target", "code")) and name not in NOT_IDS


def test_every_id_the_api_takes_has_the_one_id_rule() -> None:
    app = create_app(make_settings("sqlite://"), registry=CollectorRegistry(),
                     publisher=MemoryPublisher(), clock=ManualClock())
    doc = app.openapi()
    components = doc["components"]["schemas"]
    missing: list[str] = []
    seen: set[str] = set()

    def walk(name: str, where: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for prop, schema in components[name].get("properties", {}).items():
            # a signed code (member, join) is no id: it has its own one rule
            rules = {ID_PATTERN} | ({SIGNED_CODE_PATTERN} if (name, prop) in SIGNED_CODES
                                    else set())
            if _is_id(prop) and not rules & set(_patterns(schema, components)):
                missing.append(f"{where}: {name}.{prop}")
            for ref in re.findall(r"#/components/schemas/([\w-]+)", str(schema)):
                walk(ref, where)

    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for param in op.get("parameters", []):
                # an artifact's target (agent | firmware:<family>/<model> | model:...) is
                # not an id: it has its own one rule (protocols.artifacts.TARGET_PATTERN)
                rules = {ID_PATTERN} | ({TARGET_PATTERN} if path.startswith("/api/v1/artifacts")
                                        and param["name"] == "target" else set())
                if _is_id(param["name"]) and not rules & set(_patterns(param["schema"],
                                                                       components)):
                    missing.append(f"{method} {path}: {param['name']}")
            for ref in re.findall(r"#/components/schemas/([\w-]+)", str(op.get("requestBody"))):
                walk(ref, f"{method} {path}")
    assert missing == []
