"""The loyalty and promotions REST API: roles, problem+json, snapshot download and
verification, coupon redemption, stored value, members by phone."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from cloud.main import create_app
from cloud.promotions.signing import load_public, verify_document
from cloud.publish import MemoryPublisher
from pricing import PromotionSnapshot
from protocols.clock import ManualClock
from tests.cloud.conftest import ADMIN, DEVICE, MANAGER, TECH, api_client, auth, make_settings

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

MARKDOWN = {"kind": "markdown", "percent_bp": 1000, "scope": {"skus": ["milk"]}}


async def test_publish_download_verify_and_roles(db_url: str) -> None:
    publisher = MemoryPublisher()
    app = create_app(make_settings(db_url), publisher=publisher, clock=ManualClock(),
                     registry=CollectorRegistry())
    async with api_client(app) as client:
        r = await client.get("/api/v1/stores/store-1/promotions/snapshot", headers=auth(DEVICE))
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        r = await client.put("/api/v1/promotions/milk-10", headers=auth(MANAGER),
                             json={"promotion": MARKDOWN})
        assert r.status_code == 403
        r = await client.put("/api/v1/promotions/bad", headers=auth(ADMIN),
                             json={"promotion": {"kind": "markdown", "scope": {}}})
        assert r.status_code == 422 and r.json()["type"].endswith("invalid_promotion")
        r = await client.put("/api/v1/promotions/milk-10", headers=auth(ADMIN),
                             json={"promotion": MARKDOWN, "stores": ["store-1"]})
        assert r.status_code == 200, r.text
        r = await client.put("/api/v1/regions/north/stores/store-1", headers=auth(ADMIN))
        assert r.status_code == 200
        r = await client.post("/api/v1/promotions/publish", headers=auth(ADMIN))
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 1 and r.json()["announced"] == 1
        announced = publisher.retained["sf/v1/store-1/content/promotions"]
        assert announced.qos == 1 and b'"version":1' in announced.payload

        keys = (await client.get("/api/v1/promotions/keys", headers=auth(DEVICE))).json()
        trusted = {k["key_id"]: load_public(k["public_key"]) for k in keys}
        doc = (await client.get("/api/v1/stores/store-1/promotions/snapshot",
                                headers=auth(DEVICE))).json()
        payload = verify_document(doc, trusted)
        pos = PromotionSnapshot.model_validate(payload["snapshots"]["pos"])
        assert [p.id for p in pos.promotions] == ["milk-10"]
        assert payload["ruleset_hashes"]["pos"] == pos.ruleset_hash()
        other = (await client.get("/api/v1/stores/store-2/promotions/snapshot",
                                  headers=auth(TECH))).json()
        assert verify_document(other, trusted)["snapshots"]["pos"]["promotions"] == []
        r = await client.get("/api/v1/stores/store-1/promotions/snapshot",
                             headers={"Authorization": "Bearer nope-nope-nope"})
        assert r.status_code == 401


async def test_members_coupons_and_stored_value(db_url: str) -> None:
    settings = make_settings(db_url).model_copy(
        update={"member_hash_key": SecretStr("hash-key-for-the-api-test")})
    app = create_app(settings, publisher=MemoryPublisher(), clock=ManualClock(),
                     registry=CollectorRegistry())
    async with api_client(app) as client:
        r = await client.post("/api/v1/campaigns", headers=auth(ADMIN), json={
            "campaign_id": "referral", "name": "invite a friend", "trigger": "referral",
            "benefit": {"amount_off": 300}})
        assert r.status_code == 201, r.text
        r = await client.post("/api/v1/members", headers=auth(DEVICE),
                              json={"phone": "+49 170 1234567"})
        assert r.status_code == 201, r.text
        alice = r.json()["member_id"]
        r = await client.post("/api/v1/members", headers=auth(DEVICE),
                              json={"phone": "0049-170-1234567"})
        assert r.status_code == 409  # the same number, written differently
        r = await client.post("/api/v1/members", headers=auth(DEVICE),
                              json={"phone": "+44 7700 900123", "referred_by": alice})
        bob = r.json()["member_id"]
        r = await client.post("/api/v1/members/lookup", headers=auth(DEVICE),
                              json={"phone": "+447700900123"})
        assert r.json()["member_id"] == bob

        coupons = (await client.get(f"/api/v1/members/{bob}/coupons",
                                    headers=auth(MANAGER))).json()
        assert len(coupons) == 1 and coupons[0]["engine_code"] == "CMP-referral"
        code = coupons[0]["code"]
        r = await client.post(f"/api/v1/coupons/{code}/redeem", headers=auth(DEVICE),
                              json={"member_id": alice})
        assert r.status_code == 409 and r.json()["type"].endswith("coupon_wrong_member")
        # A redemption names a store the cloud knows (here: HQ put it in a region).
        r = await client.put("/api/v1/regions/north/stores/store-1", headers=auth(ADMIN))
        assert r.status_code == 200
        r = await client.post(f"/api/v1/coupons/{code}/redeem", headers=auth(DEVICE),
                              json={"store_id": "store-1", "sale_id": "s1"})
        assert r.status_code == 200 and r.json()["redeemed"] is True
        r = await client.post(f"/api/v1/coupons/{code}/redeem", headers=auth(DEVICE), json={})
        assert r.status_code == 409 and r.json()["type"].endswith("coupon_redeemed")

        sv = f"/api/v1/members/{alice}/stored-value"
        r = await client.post(sv, headers=auth(DEVICE),
                              json={"kind": "load", "amount": 1000, "ref": "top-up-1"})
        assert r.json()["balance"] == 1000
        r = await client.post(sv, headers=auth(DEVICE),
                              json={"kind": "spend", "amount": 1200, "ref": "sale-9"})
        assert r.status_code == 409 and r.json()["type"].endswith("insufficient_balance")
        r = await client.post(sv, headers=auth(TECH),
                              json={"kind": "spend", "amount": 1, "ref": "x"})
        assert r.status_code == 403
        r = await client.post(f"/api/v1/members/{alice}/points/spend", headers=auth(DEVICE),
                              json={"points": 5, "op_id": "spend:s2"})
        assert r.status_code == 409
        r = await client.get("/api/v1/members/nobody", headers=auth(MANAGER))
        assert r.status_code == 404


async def test_phone_without_hash_key_is_503(db_url: str) -> None:
    app = create_app(make_settings(db_url), publisher=MemoryPublisher(),
                     registry=CollectorRegistry())
    async with api_client(app) as client:
        r = await client.post("/api/v1/members", headers=auth(ADMIN), json={"phone": "0123456"})
        assert r.status_code == 503 and r.json()["type"].endswith("not_configured")
        r = await client.post("/api/v1/members", headers=auth(ADMIN), json={})
        assert r.status_code == 201
