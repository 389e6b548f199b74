"""The lanes' member look-up against the real cloud app (its API over ASGI, SQLite):
by phone and by id while online, with tier and balances; an unknown member is 404; the
points a member pays with come off the basket and the receipt prints the balance."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from cloud.main import create_app
from cloud.publish import MemoryPublisher
from tests.cloud.conftest import ADMIN, DEVICE, auth, make_settings
from tests.edge_agent.till.rig import lane_rig
from tests.edge_agent.till.test_api import outbox_events


async def test_member_by_phone_and_id_from_the_cloud(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'cloud.db'}").model_copy(
        update={"member_hash_key": SecretStr("hash-key-for-the-lanes-test")})
    app = create_app(settings, publisher=MemoryPublisher(), registry=CollectorRegistry())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud",
                                     headers=auth(ADMIN)) as hq:
            r = await hq.post("/api/v1/members", json={"phone": "+49 170 7654321"})
            assert r.status_code == 201, r.text
            member_id = r.json()["member_id"]
            r = await hq.post(f"/api/v1/members/{member_id}/points/earn",
                              json={"points": 700, "op_id": "welcome-700"})
            assert r.status_code == 200, r.text
        till = {"cloud_api": "http://cloud", "cloud_api_token": DEVICE}
        async with lane_rig(tmp_path / "box", lanes=1, till=till, transport=transport) as rig, \
                rig.client(0) as http:
            bid = (await http.post("/till/v1/baskets")).json()["basket_id"]
            base = f"/till/v1/baskets/{bid}"
            await http.post(f"{base}/items", json={"code": "sku-00003", "qty": 2})
            r = await http.put(f"{base}/member", json={"phone": "0049 170 7654321"})
            assert r.status_code == 200, r.text
            assert r.json()["member"]["member_id"] == member_id
            r = await http.put(f"{base}/member", json={"member_id": "M-nobody"})
            assert (r.status_code, r.json()["reason"]) == (404, "unknown_member")
            r = await http.put(f"{base}/member", json={"member_id": member_id})
            assert r.status_code == 200 and r.json()["member"]["member_id"] == member_id
            sale = (await http.post(f"{base}/complete")).json()
            assert sale["reason"] == "no_tender"
            await http.put(f"{base}/tender", json={"method": "card"})
            sale = (await http.post(f"{base}/complete")).json()
            member = sale["receipt"]["member"]
            assert member["pending"] is False
            assert member["balance"] == 700 + sale["points_earned"]  # known: looked up
            data = outbox_events(rig, "sale")[sale["sale_id"]]["data"]
            assert data["member"]["points_balance"] == 700
