"""The cart-screen server over real HTTP and a real WebSocket, fed by the real cart driver
(on the in-package FakeContext) and the real trigger service."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from protocols.triggers import CartScreenPush
from tests.edge_agent.cartscreen.rig import BAGUETTE, CEREAL, MILK, Rig


async def test_page_static_files_map_and_strings_are_served_locally(rig: Rig) -> None:
    page = await rig.http.get("/cart/C1")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    for path in ("/static/app.js", "/static/app.css"):
        assert (await rig.http.get(path)).status_code == 200
    svg = await rig.http.get("/map.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert 'data-shelf="D-1"' in svg.text and 'class="rack"' in svg.text
    strings = (await rig.http.get("/api/i18n")).json()
    assert strings["zh"]["checkout"] == "结账" and strings["en"]["checkout"] == "Checkout"
    assert set(strings["en"]) == set(strings["zh"])
    assert (await rig.http.get("/cart/bad%20id")).status_code == 404


async def test_coupon_is_pushed_over_the_websocket_and_applying_it_lowers_the_total(
        rig: Rig) -> None:
    await rig.session("C1", "sess-1", qr="SFM:M0001")
    await rig.item("C1", "sess-1", CEREAL)
    await rig.item("C1", "sess-1", MILK, 2)
    async with connect(f"ws://127.0.0.1:{rig.in_aisle.server.port}/ws/cart/C1") as ws:  # type: ignore[union-attr]
        hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert CartScreenPush.model_validate(hello).type == "hello"
        codes = await rig.dwell("C1", "sess-1", "M0001", 3)
        assert codes == ["RDEMOGRC5-000001"]
        msgs: list[dict[str, Any]] = []
        while not any(m["type"] == "coupon" for m in msgs):
            msgs.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
        coupon = next(m for m in msgs if m["type"] == "coupon")["data"]
        assert coupon["code"] == "RDEMOGRC5-000001" and coupon["title_zh"] == "整单立减5元"

    state = (await rig.http.get("/api/cart/C1/state")).json()
    assert state["member"]["name"] == "Li Wei" and state["member"]["points"] == 1280
    before = state["basket"]["total"]
    assert before == 2590 + 2 * 1490
    assert [c["code"] for c in state["coupons"]] == ["RDEMOGRC5-000001"]
    applied = (await rig.http.post("/api/cart/C1/coupons/RDEMOGRC5-000001/apply")).json()
    assert applied["total"] == before - 500
    assert applied["coupons_applied"] == ["RDEMOGRC5-000001"]
    # someone else's or an unknown code does nothing
    assert (await rig.http.post("/api/cart/C2/coupons/RDEMOGRC5-000001/apply")).status_code \
        == 404

    # checkout: a payment QR for exactly that total, then the e-receipt redeems the code
    co = (await rig.http.post("/api/cart/C1/checkout")).json()
    assert co["total"] == before - 500 and co["qr_svg"].startswith("<svg")
    assert co["payload"].startswith(f"SFPAY:S001:C1:{co['checkout_id']}:{before - 500}:CNY:")
    receipt = (await rig.http.post(f"/api/cart/C1/checkout/{co['checkout_id']}/paid")).json()
    assert receipt["coupons_redeemed"] == ["RDEMOGRC5-000001"] and receipt["total"] == before - 500
    assert receipt["points_earned"] > 0
    redeemed = [e for e in rig.ctx.events if e.kind == "coupon_redeemed"]
    assert [e.data["code"] for e in redeemed] == ["RDEMOGRC5-000001"]
    c = await rig.in_aisle.ledger.by_code("RDEMOGRC5-000001")
    assert c is not None and c.redeemed_ms is not None
    assert (await rig.http.get("/api/cart/C1/receipt")).json()["receipt_id"] == co["checkout_id"]


async def test_the_same_coupon_prices_the_same_at_the_till_engine(rig: Rig) -> None:
    """One price everywhere: the cart's total is pricing.price() with the coupon's engine code."""
    from pricing import Basket, Line, Member, Store, price

    await rig.session("C3", "sess-3", qr="SFM:M0002")
    await rig.item("C3", "sess-3", BAGUETTE, 3)
    await rig.item("C3", "sess-3", MILK)
    await rig.dwell("C3", "sess-3", "M0002", 3)
    [coupon] = (await rig.http.get("/api/cart/C3/state")).json()["coupons"]
    cart_total = (await rig.http.post(f"/api/cart/C3/coupons/{coupon['code']}/apply")).json()
    catalog, ruleset = rig.in_aisle._pricing()  # type: ignore[misc]
    till = price(Basket(currency="CNY", coupons=("GROCERY5",), lines=(
        Line(line_id="a", sku=BAGUETTE, qty=3), Line(line_id="b", sku=MILK, qty=1))),
        catalog, ruleset, Member(id="M0002", tier="silver", currency="CNY", points_balance=310),
        rig.ctx.clock.now_ms(), Store(id="S001", currency="CNY"))
    assert cart_total["total"] == till.total and cart_total["discount"] == till.discount
    assert till.discount > 500  # the bakery markdown and the coupon both apply


async def test_search_price_check_recommendations_route_and_sign_in(rig: Rig) -> None:
    found = (await rig.http.get("/api/products", params={"q": "milk"})).json()["items"]
    assert [p["sku"] for p in found] == [MILK] and found[0]["shelf"] == "D-1"
    assert (await rig.http.get("/api/products", params={"q": "牛奶"})).json()["items"][0]["sku"] \
        == MILK
    check = (await rig.http.get(f"/api/products/{CEREAL}")).json()
    assert check["price"] == 2590 and check["currency"] == "CNY"
    assert (await rig.http.get("/api/products/0000000000000")).status_code == 404

    await rig.session("C4", "sess-4")
    await rig.item("C4", "sess-4", CEREAL)
    state = (await rig.http.get("/api/cart/C4/state")).json()
    assert state["member"] is None
    assert state["recommendations"][0]["sku"] == MILK  # bought together with cereal
    assert (await rig.http.post("/api/cart/C4/member", json={"qr": "nope"})).status_code == 400
    member = (await rig.http.post("/api/cart/C4/member", json={"qr": "SFM:M0003"})).json()
    assert member["name"] == "Zhang Min"

    listed = (await rig.http.put("/api/cart/C4/list",
                                 json={"skus": [MILK, BAGUETTE, "unknown", MILK]})).json()
    assert listed["shopping_list"] == [MILK, BAGUETTE]
    route = (await rig.http.get("/api/cart/C4/route")).json()
    assert route["order"] == ["K-1", "D-1"] or route["order"] == ["D-1", "K-1"]
    assert len(route["points"]) > 10
    assert (await rig.http.put("/api/cart/C4/list", json={"skus": "x"})).status_code == 400
    assert (await rig.http.post("/api/cart/C4/member", content=b"{not json")).status_code == 400
    assert rig.ctx.registry.get_sample_value("storefleet_cartscreen_bad_requests_total",
                                             {"reason": "400"}) == 3
