"""Device shadows in the API (decision 0037): expected versions (a stale write is a 409,
nothing stored or published), null deletes a key (PUT and PATCH, nested too), size and
depth caps, a known device takes its own family's keys only, and GET shows the delta
against what the store reported it applied."""

from __future__ import annotations

import json
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from cloud.main import create_app
from cloud.publish import MemoryPublisher
from protocols import encode, topics
from protocols.clock import ManualClock
from protocols.messages import Birth, DeviceInfo, ShadowDesired, ShadowReported
from protocols.shadow_keys import DESIRED_MAX_DEPTH, DEVICE_DESIRED_MAX_BYTES
from tests.cloud.api.test_resources import ingest
from tests.cloud.conftest import ADMIN, MANAGER, api_client, auth, make_settings

URL = "/api/v1/stores/s1/devices/{device}/shadow"


def book(version: int, **prices: int) -> dict[str, Any]:
    return {"version": version, "currency": "EUR",
            "items": {sku: {"price_minor": p} for sku, p in prices.items()}}


def published(pub: MemoryPublisher, device: str) -> list[ShadowDesired]:
    return [ShadowDesired.model_validate_json(p.payload)
            for p in pub.on(topics.shadow_desired("s1", device))]


def problem(r: httpx.Response, status: int, reason: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith(f"/{reason}")
    return str(r.json()["detail"])


async def test_expected_version_null_deletes_and_the_delta(db_url: str) -> None:
    pub = MemoryPublisher()
    app = create_app(make_settings(db_url), publisher=pub, registry=CollectorRegistry())
    desired, admin = URL.format(device="AP1") + "/desired", auth(ADMIN)
    async with api_client(app) as c:
        assert (await c.get(URL.format(device="AP1"), headers=auth(MANAGER))).status_code == 404
        r = await c.put(desired, headers=admin, json={
            "state": {"esl_price_book": book(1, A=100, B=200)}, "expected_version": 0})
        assert r.status_code == 200, r.text
        assert r.json()["desired_version"] == 1 and not r.json()["in_sync"]
        assert r.json()["delta"] == {"esl_price_book": book(1, A=100, B=200)}
        assert [m.version for m in published(pub, "AP1")] == [1]

        # A writer that read version 0 is refused: nothing stored, nothing published.
        detail = problem(await c.put(desired, headers=admin, json={
            "state": {"esl_price_book": book(9, A=1)}, "expected_version": 0}),
            409, "stale_version")
        assert "version 1, not 0" in detail
        problem(await c.patch(desired, headers=admin, json={
            "state": {"esl_price_book": None}, "expected_version": 2}), 409, "stale_version")
        assert [m.version for m in published(pub, "AP1")] == [1]

        # PATCH merges (RFC 7386): a nested null deletes one item, the rest stays.
        r = await c.patch(desired, headers=admin, json={
            "state": {"esl_price_book": {"version": 2, "items": {"B": None}}},
            "expected_version": 1})
        assert r.status_code == 200, r.text
        assert r.json()["desired"] == {"esl_price_book": book(2, A=100)}
        assert published(pub, "AP1")[-1].state == {"esl_price_book": book(2, A=100)}

        # The store reports what its driver applied: the delta is what differs.
        applied: dict[str, Any] = {"applied": {"esl_price_book": book(2, A=100)}, "delta": [],
                   "unsupported": [], "rejected": {}, "error": None}
        ingest(db_url, [(topics.shadow_reported("s1", "AP1"),
                         encode(ShadowReported(version=2, ts=5, state=applied)))],
               ManualClock())
        r = await c.get(URL.format(device="AP1"), headers=auth(MANAGER))
        assert r.json()["in_sync"] and r.json()["delta"] == {}
        assert r.json()["reported"] == applied
        # The same shadow under the agent-style path (the one resource, two addresses).
        r2 = await c.get("/api/v1/stores/s1/shadow/AP1", headers=auth(MANAGER))
        assert r2.json() == r.json()

        # null deletes in PUT too; unconditional without expected_version.
        r = await c.put(desired, headers=admin, json={"state": {"esl_price_book": None}})
        assert r.status_code == 200 and r.json()["desired"] == {}
        assert r.json()["desired_version"] == 3 and r.json()["delta"] == {}
        assert published(pub, "AP1")[-1].state == {}


async def test_caps_and_families(db_url: str) -> None:
    pub = MemoryPublisher()
    app = create_app(make_settings(db_url), publisher=pub, registry=CollectorRegistry())
    admin = auth(ADMIN)
    async with api_client(app) as c:
        # Size: the resulting state, so a PATCH that grows it over the cap is refused too.
        big = book(1, **{f"SKU{i:05d}": i for i in range(DEVICE_DESIRED_MAX_BYTES // 20)})
        assert len(json.dumps(big)) > DEVICE_DESIRED_MAX_BYTES
        detail = problem(await c.put(URL.format(device="AP1") + "/desired", headers=admin,
                                     json={"state": {"esl_price_book": big}}),
                         413, "shadow_too_large")
        assert str(DEVICE_DESIRED_MAX_BYTES) in detail
        # Depth: a pathological document is refused before anything is stored.
        deep: Any = 1
        for _ in range(DESIRED_MAX_DEPTH):
            deep = {"x": deep}
        problem(await c.put(URL.format(device="AP1") + "/desired", headers=admin,
                            json={"state": {"esl_price_book": deep}}), 422, "shadow_too_deep")
        assert (await c.get(URL.format(device="AP1"), headers=admin)).status_code == 404
        assert published(pub, "AP1") == []
        # Keys no driver declares, and "agent" is not a device.
        problem(await c.patch(URL.format(device="AP1") + "/desired", headers=admin,
                              json={"state": {"volume_db": -3}}), 422, "undeclared_shadow_key")
        problem(await c.put(URL.format(device="agent") + "/desired", headers=admin,
                            json={"state": {}}), 422, "invalid")

        # A device the cloud knows (from the store's birth) takes its family's keys only.
        ingest(db_url, [(topics.state("s1"), encode(Birth(
            bd_seq=1, ts=1, agent_version="9",
            devices=[DeviceInfo(device_id="U1", kind="audio", online=True)])))], ManualClock())
        detail = problem(await c.put(URL.format(device="U1") + "/desired", headers=admin,
                                     json={"state": {"esl_price_book": book(1, A=1)}}),
                         422, "unsupported_shadow_key")
        assert "'audio'" in detail and "esl_price_book (esl)" in detail
        # A device not known yet takes any declared key (it may be configured later).
        r = await c.put(URL.format(device="AP9") + "/desired", headers=admin,
                        json={"state": {"esl_price_book": book(1, A=1)}})
        assert r.status_code == 200, r.text
