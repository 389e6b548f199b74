"""HQ's retail setup for priced-order tests (decision 0067), all through ``/api/v1``:
a chain price book, promotions by channel, a member tier with member prices, and a
member with a coupon."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from cloud.loyalty.members import create_member
from tests.cloud.conftest import ADMIN, auth

# Minor units (EUR cents). Online: milk 10 % off (200 -> 180); the gold tier's member
# price of bread is 220 (list 250); the pos-only half-price bread must not apply.
ITEMS = [{"sku": "milk", "category": "dairy", "price": 200},
         {"sku": "bread", "category": "bakery", "price": 250},
         {"sku": "cola", "category": "drinks", "price": 150}]
PROMOTIONS = {
    "online-milk": ({"kind": "markdown", "percent_bp": 1000, "scope": {"skus": ["milk"]}},
                    ["online"]),
    "pos-bread": ({"kind": "markdown", "percent_bp": 5000, "scope": {"skus": ["bread"]}},
                  ["pos"]),
    "earn": ({"kind": "points_earn", "points": 1, "per_minor": 100}, ["pos", "cart",
                                                                       "online"]),
}
COUPON_OFF = 50


@dataclass(frozen=True)
class Retail:
    member_id: str
    coupon: str


async def ok(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code < 300, resp.text
    return dict(resp.json())


async def publish_prices(client: httpx.AsyncClient,
                         items: list[dict[str, Any]] | None = None) -> None:
    await ok(await client.post("/api/v1/price-books", headers=auth(ADMIN),
                               json={"items": items or ITEMS}))


async def setup_retail(client: httpx.AsyncClient) -> Retail:
    await publish_prices(client)
    for pid, (promo, channels) in PROMOTIONS.items():
        await ok(await client.put(f"/api/v1/promotions/{pid}", headers=auth(ADMIN),
                                  json={"promotion": promo, "channels": channels}))
    await ok(await client.put("/api/v1/tiers/gold", headers=auth(ADMIN),
                              json={"min_points": 0, "prices": {"bread": 220}}))
    campaign = await ok(await client.post(
        "/api/v1/campaigns", headers=auth(ADMIN),
        json={"name": "50 off", "trigger": "manual", "benefit": {"amount_off": COUPON_OFF}}))
    await ok(await client.post("/api/v1/promotions/publish", headers=auth(ADMIN)))
    app: FastAPI = client.app  # type: ignore[attr-defined]
    with app.state.cloud.writer.begin() as s:
        member_id = create_member(s, now_ms=1, key=None).member_id
    coupon = await ok(await client.post(
        f"/api/v1/campaigns/{campaign['campaign_id']}/coupons", headers=auth(ADMIN),
        json={"member_id": member_id, "request_id": "online-test-1"}))
    return Retail(member_id=member_id, coupon=str(coupon["code"]))
