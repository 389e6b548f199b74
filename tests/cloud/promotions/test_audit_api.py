"""The audit over REST: findings listed with kind, reason and source device (filterable),
the audit summary, and promotion definitions that could never apply refused as
problem+json naming the field (issue 11)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import make_engine, make_session_factory
from cloud.db.engine import writer
from cloud.ingest.batch import BatchProcessor
from cloud.ingest.hooks import PostCommitHooks
from cloud.main import create_app
from cloud.promotions.metrics import PromotionMetrics
from cloud.promotions.reprice import RepriceHook
from cloud.publish import MemoryPublisher
from protocols.clock import ManualClock
from tests.cloud.conftest import ADMIN, MANAGER, MANAGER_S1, api_client, auth, make_settings
from tests.cloud.promotions.test_audit import priced_sale, sale_event

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def test_findings_and_summary_over_rest(db_url: str) -> None:
    clock = ManualClock()
    app = create_app(make_settings(db_url), publisher=MemoryPublisher(), clock=clock,
                     registry=CollectorRegistry())
    async with api_client(app) as http:
        engine = make_engine(db_url)
        try:
            sessions: sessionmaker[Session] = make_session_factory(writer(engine))
            good = priced_sale(sessions, clock)
            registry = CollectorRegistry()
            hooks = PostCommitHooks(registry=registry)
            hooks.register("reprice", {"sale"}, RepriceHook(metrics=PromotionMetrics(registry)))
            BatchProcessor(sessions, clock=clock, max_payload=65_536, hooks=hooks).process([
                sale_event("good", good),
                sale_event("bare-1", {"totals": {"paid": 300}}, device_id="till-2"),
                sale_event("bare-2", {"totals": {"paid": 300}, "charged": 250},
                           device_id="cart-01"),
                sale_event("other-store", {"totals": {"paid": 1}}, store_id="s1"),
            ])
        finally:
            engine.dispose()

        r = await http.get("/api/v1/promotions/mismatches", headers=auth(MANAGER),
                           params={"kind": "unaudited", "store_id": "store-1"})
        assert r.status_code == 200, r.text
        assert sorted((f["event_id"], f["kind"], f["reason"], f["device_id"])
                      for f in r.json()) == [
            ("bare-1", "unaudited", "no_basket", "till-2"),
            ("bare-2", "unaudited", "no_basket", "cart-01")]
        r = await http.get("/api/v1/promotions/mismatches", headers=auth(MANAGER),
                           params={"kind": "mismatch"})
        assert [(f["event_id"], f["reason"], f["expected"], f["reported"])
                for f in r.json()] == [
            ("bare-2", "charged_differs", {"paid": 250}, {"paid": 300, "charged": 250})]
        r = await http.get("/api/v1/promotions/mismatches", headers=auth(MANAGER),
                           params={"reason": "no_basket"})
        assert {f["event_id"] for f in r.json()} == {"bare-1", "bare-2", "other-store"}
        r = await http.get("/api/v1/promotions/mismatches", headers=auth(MANAGER),
                           params={"kind": "nonsense"})
        assert r.status_code == 422

        r = await http.get("/api/v1/promotions/audit", headers=auth(MANAGER),
                           params={"store_id": "store-1"})
        assert r.status_code == 200, r.text
        assert r.json() == {"sales": 3, "audited": 1, "mismatched": 0, "unaudited": 2,
                            "pending": 0, "charged_differs": 1,
                            "unaudited_reasons": {"no_basket": 2}}
        assert (await http.get("/api/v1/promotions/audit", headers=auth(MANAGER))
                ).json()["sales"] == 4
        # A store-scoped manager sees its own store only.
        mine = (await http.get("/api/v1/promotions/audit", headers=auth(MANAGER_S1))).json()
        assert (mine["sales"], mine["unaudited"]) == (1, 1)
        r = await http.get("/api/v1/promotions/audit", headers=auth(MANAGER_S1),
                           params={"store_id": "store-1"})
        assert r.status_code == 403


@pytest.mark.parametrize(("conditions", "field"), [
    ({"valid_from_ms": 2_000_000, "valid_until_ms": 2_000_000}, "conditions.valid_until_ms"),
    ({"time_from_min": 480, "time_until_min": 480}, "conditions.time_until_min"),
])
async def test_a_promotion_that_could_never_apply_is_refused(
        db_url: str, conditions: dict[str, int], field: str) -> None:
    app = create_app(make_settings(db_url), publisher=MemoryPublisher(), clock=ManualClock(),
                     registry=CollectorRegistry())
    async with api_client(app) as http:
        r = await http.put("/api/v1/promotions/never", headers=auth(ADMIN), json={
            "promotion": {"kind": "markdown", "percent_bp": 1000, "scope": {"skus": ["milk"]},
                          "conditions": conditions}})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("invalid_promotion")
        assert field in r.json()["detail"]
        assert (await http.get("/api/v1/promotions", headers=auth(ADMIN))).json() == []
