"""Bearer tokens with roles, and every error as RFC 9457 problem+json."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.main import create_app
from cloud.publish import MemoryPublisher
from cloud.settings import CloudSettings
from tests.cloud.conftest import (
    ADMIN,
    DEVICE,
    MANAGER,
    TECH,
    api_client,
    auth,
    make_settings,
    metric,
)


def assert_problem(resp: httpx.Response, status: int) -> dict:  # type: ignore[type-arg]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status
    assert body["title"] and body["type"] and body["detail"]
    return body  # type: ignore[no-any-return]


@pytest.fixture
def settings(tmp_path) -> CloudSettings:  # type: ignore[no-untyped-def]
    return make_settings(f"sqlite:///{tmp_path / 'api.db'}")


async def test_missing_and_unknown_token_get_401(settings: CloudSettings) -> None:
    registry = CollectorRegistry()
    async with api_client(create_app(settings, registry=registry,
                                     publisher=MemoryPublisher())) as client:
        r = await client.get("/api/v1/stores")
        assert_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert_problem(await client.get("/api/v1/stores", headers=auth("nope-nope-nope")), 401)
        assert_problem(await client.get("/api/v1/stores", headers={"Authorization": "Basic x"}),
                       401)
    assert metric(registry, "storefleet_api_rejected_total", reason="unauthenticated") == 3


@pytest.mark.parametrize(
    ("token", "read", "command", "desired"),
    [
        (ADMIN, 200, 202, 200),
        (TECH, 200, 202, 403),
        (MANAGER, 200, 403, 403),
        (DEVICE, 403, 403, 403),
    ],
)
async def test_roles(settings: CloudSettings, token: str, read: int, command: int,
                     desired: int) -> None:
    from cloud.db import make_engine, upgrade
    from cloud.db.engine import make_session_factory
    from cloud.db.models import Store

    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with make_session_factory(engine).begin() as session:
        session.add(Store(store_id="s1", online=True))
    engine.dispose()
    registry = CollectorRegistry()
    async with api_client(create_app(settings, registry=registry,
                                     publisher=MemoryPublisher())) as client:
        h = auth(token)
        assert (await client.get("/api/v1/stores", headers=h)).status_code == read
        assert (await client.get("/api/v1/events", headers=h)).status_code == read
        r = await client.post("/api/v1/stores/s1/commands", headers=h, json={"name": "ping"})
        assert r.status_code == command
        r = await client.put("/api/v1/stores/s1/shadow/agent/desired", headers=h,
                             json={"state": {"log_level": "debug"}})
        assert r.status_code == desired
        if desired == 403:
            assert_problem(r, 403)
    forbidden = [read, command, desired].count(403)
    assert metric(registry, "storefleet_api_rejected_total", reason="forbidden") == forbidden + (
        read == 403)  # the two reads both count


# Store s1 does not exist here: a body that slipped past validation would reach the
# handler and come back 404, so each case names the one status and reason it must get.
@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [
        ("put", "/api/v1/stores/s1/shadow/agent/desired", {"stat": {}}, 422, "invalid"),
        ("put", "/api/v1/stores/s1/shadow/agent/desired", {"state": [1, 2]}, 422, "invalid"),
        ("put", "/api/v1/stores/s1/shadow/agent/desired", "not an object", 422, "invalid"),
        ("post", "/api/v1/stores/s1/commands", {"name": "ping", "ttl_s": 0}, 422, "invalid"),
        ("post", "/api/v1/stores/s1/commands", {"name": "bad/name"}, 422, "invalid"),
        ("post", "/api/v1/stores/s1/commands", {}, 422, "invalid"),
        ("get", "/api/v1/events?limit=0", None, 422, "invalid"),
        ("get", "/api/v1/events?after=%%%", None, 422, "bad_cursor"),
        ("get", "/api/v1/devices?online=perhaps", None, 422, "invalid"),
        ("get", "/api/v1/stores/bad%2Fid", None, 404, "not_found"),
    ],
)
async def test_bad_input_is_422_problem(settings: CloudSettings, method: str, path: str,
                                        body: object, status: int, reason: str) -> None:
    registry = CollectorRegistry()
    async with api_client(create_app(settings, registry=registry,
                                     publisher=MemoryPublisher())) as client:
        kwargs = {} if body is None else {"json": body}
        r = await client.request(method, path, headers=auth(ADMIN), **kwargs)  # type: ignore[arg-type]
    problem = assert_problem(r, status)
    assert problem["instance"].startswith("/api/v1/")
    assert problem["type"].endswith(f"/{reason}")
    rejected = {name: metric(registry, "storefleet_api_rejected_total", reason=name)
                for name in ("invalid", "bad_cursor", "not_found")}
    assert rejected == {name: float(name == reason) for name in rejected}


async def test_unknown_route_and_method_are_problems(settings: CloudSettings) -> None:
    async with api_client(create_app(settings, publisher=MemoryPublisher())) as client:
        assert_problem(await client.get("/api/v1/nothing-here", headers=auth(ADMIN)), 404)
        assert_problem(await client.delete("/api/v1/stores", headers=auth(ADMIN)), 405)
        assert_problem(await client.get("/api/v1/stores/none-such", headers=auth(ADMIN)), 404)


async def test_health_metrics_and_docs_need_no_token(settings: CloudSettings) -> None:
    async with api_client(create_app(settings, publisher=MemoryPublisher())) as client:
        r = await client.get("/healthz")
        assert r.json() == {"status": "ok", "database": "ok"}
        r = await client.get("/metrics")
        assert r.status_code == 200 and "storefleet_api_requests_total" in r.text
        spec = (await client.get("/openapi.json")).json()
        assert (await client.get("/docs")).status_code == 200
    ops = [op for path in spec["paths"].values() for op in path.values()]
    assert len(ops) >= 11
    assert all(op.get("summary") for op in ops)
    assert "StorePublic" in spec["components"]["schemas"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


async def test_healthz_503_when_database_is_gone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    app = create_app(settings, publisher=MemoryPublisher(), migrate=False)
    async with api_client(app) as client:
        assert_problem(await client.get("/healthz"), 503)


def test_placeholder_tokens_are_refused() -> None:
    # bare role strings, as in a config file: the "before" validator turns them into grants
    with pytest.raises(ValueError, match="placeholder"):
        CloudSettings(api_tokens={"changeme": "hq-admin"})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        CloudSettings(api_tokens={"short": "hq-admin"})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        CloudSettings(api_tokens={"a-long-enough-token": "superuser"})  # type: ignore[dict-item]
