"""Trigger rules ride on coupon promotions into the signed, versioned store documents."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.main import create_app
from cloud.promotions.signing import load_public, verify_document
from cloud.publish import MemoryPublisher
from pricing import PromotionSnapshot
from protocols.clock import ManualClock
from protocols.triggers import TriggerRuleSet
from tests.cloud.conftest import ADMIN, DEVICE, api_client, auth, make_settings

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

COUPON = {"kind": "coupon", "code": "DAIRY10", "percent_bp": 1000,
          "scope": {"categories": ["milk_carton"]}}
RULE: dict[str, Any] = {"id": "dairy-shelf", "shelf": "D-1", "dwell_ms": 3000, "member_only": True,
        "coupon": {"engine_code": "DAIRY10", "title": "10% off dairy", "title_zh": "乳制品9折"}}


async def test_rules_are_validated_published_signed_and_scoped(db_url: str) -> None:
    app = create_app(make_settings(db_url), publisher=MemoryPublisher(), clock=ManualClock(),
                     registry=CollectorRegistry())
    async with api_client(app) as client:
        async def put(pid: str, body: dict[str, object]) -> httpx.Response:
            return await client.put(f"/api/v1/promotions/{pid}", headers=auth(ADMIN), json=body)

        async def document(store: str) -> dict[str, object]:
            keys = (await client.get("/api/v1/promotions/keys", headers=auth(DEVICE))).json()
            doc = (await client.get(f"/api/v1/stores/{store}/promotions/snapshot",
                                    headers=auth(DEVICE))).json()
            return verify_document(doc, {k["key_id"]: load_public(k["public_key"])
                                         for k in keys})

        # a plain promotion first: documents have no trigger_rules key (stores keep theirs)
        assert (await put("milk-md", {"promotion": {"kind": "markdown", "percent_bp": 500,
                                                    "scope": {"skus": ["milk"]}}})).status_code \
            == 200
        assert (await client.post("/api/v1/promotions/publish", headers=auth(ADMIN))
                ).status_code == 200
        assert "trigger_rules" not in await document("store-1")

        refused = [
            await put("cp-dairy", {"promotion": COUPON,
                                   "trigger_rules": [{**RULE, "zone": "dairy"}]}),  # zone+shelf
            await put("cp-dairy", {"promotion": COUPON, "trigger_rules": [
                {**RULE, "coupon": {**RULE["coupon"], "engine_code": "OTHER"}}]}),
            await put("milk-md", {"promotion": {"kind": "markdown", "percent_bp": 500,
                                                "scope": {"skus": ["milk"]}},
                                  "trigger_rules": [RULE]}),  # not a coupon
        ]
        for r in refused:
            assert r.status_code == 422, r.text
            assert r.json()["type"].endswith("invalid_promotion")
        ok = await put("cp-dairy", {"promotion": COUPON, "stores": ["store-1"],
                                    "trigger_rules": [RULE]})
        assert ok.status_code == 200, ok.text
        public = ok.json()
        assert public["trigger_rules"][0]["id"] == "dairy-shelf"
        assert "storefleet.trigger_rules" not in public["definition"]

        pub = (await client.post("/api/v1/promotions/publish", headers=auth(ADMIN))).json()
        mine, other = await document("store-1"), await document("store-2")
        rules = TriggerRuleSet.model_validate(mine["trigger_rules"])
        assert rules.version == pub["version"] and [r.id for r in rules.rules] == ["dairy-shelf"]
        assert rules.rules[0].coupon.title_zh == "乳制品9折" and rules.rules[0].member_only
        # out of the promotion's scope: HQ owns rules now, and there are none for it
        assert TriggerRuleSet.model_validate(other["trigger_rules"]).rules == ()
        # the rules are not pricing: the engine snapshot is the promotion alone
        cart = PromotionSnapshot.model_validate(mine["snapshots"]["cart"])  # type: ignore[index]
        assert sorted(p.id for p in cart.promotions) == ["cp-dairy", "milk-md"]
        listed = (await client.get("/api/v1/promotions", headers=auth(ADMIN))).json()
        assert {p["promotion_id"]: len(p["trigger_rules"]) for p in listed} == {
            "cp-dairy": 1, "milk-md": 0}
