"""Online orders priced at placement by the engine's online channel (decision 0067): the
cloud's price book, online-only promotions, member prices, a member coupon redeemed once,
the price frozen on the order, returned by the API and carried in the dispatch."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry

from cloud.ingest.batch import BatchProcessor
from cloud.loyalty import points
from cloud.main import ingest_hooks
from cloud.orders.metrics import OrderMetrics
from cloud.publish import MemoryPublisher
from protocols import topics
from protocols.clock import ManualClock
from protocols.codec import decode
from protocols.orders import OrderDispatch
from tests.cloud.conftest import ADMIN, MANAGER, TECH, auth, metric
from tests.cloud.orders.retail import ITEMS, publish_prices, setup_retail
from tests.cloud.orders.test_orders_api import order_body, setup_stores
from tests.cloud.orders.test_status_and_ranges import status

LINES = [{"sku": "milk", "qty": 2}, {"sku": "bread", "qty": 1}]
STOCK = {"S-mitte": {"milk": 10, "bread": 5, "cola": 5}}


async def test_order_is_priced_by_the_online_channel_and_the_price_is_fixed(
    client: httpx.AsyncClient, publisher: MemoryPublisher, registry: CollectorRegistry
) -> None:
    retail = await setup_retail(client)
    await setup_stores(client, STOCK)
    body = order_body(lines=LINES, member_id=retail.member_id, coupons=[retail.coupon])
    key = {"Idempotency-Key": "priced-0001"}
    r = await client.post("/api/v1/orders", headers={**auth(ADMIN), **key}, json=body)
    assert r.status_code == 201, r.text
    order = r.json()
    price = order["price"]
    # milk 200 -10 % online = 180 x2; bread: the gold member price 220, not the pos-only
    # half price; then the member's coupon takes 50, split by value (31 + 19): 530.
    assert {ln["sku"]: (ln["qty"], ln["unit_price"], ln["net"]) for ln in price["lines"]} \
        == {"milk": (2, 200, 329), "bread": (1, 250, 201)}
    assert (price["currency"], price["subtotal"], price["discount"], price["total"]) == \
        ("EUR", 650, 120, 530)
    assert price["points_earned"] == 5  # 1 point per 100 minor paid
    assert price["coupons_applied"] == [retail.coupon] and price["coupons_rejected"] == []
    assert {a["promotion_id"] for a in price["applied"]} >= {"online-milk",
                                                             "tier-gold-price-bread"}
    assert "pos-bread" not in {a["promotion_id"] for a in price["applied"]}
    assert price["member_tier"] == "gold" and price["channel"] == "online"
    # No online payments configured: collected at the store, dispatched now with the total.
    assert order["payment"]["state"] == "at_store" and order["payment"]["payload"] is None
    assert order["dispatch"] == "published"
    msg = decode(publisher.on(topics.orders("S-mitte"))[0].payload, OrderDispatch)
    assert (msg.total, msg.currency, msg.payment) == (530, "EUR", "at_store")
    coupon = (await client.get(f"/api/v1/coupons/{retail.coupon}", headers=auth(ADMIN))).json()
    assert coupon["redeemed"] is True

    # HQ raises milk and drops the promotion: a retry of the placement keeps its price.
    await publish_prices(client, [{**ITEMS[0], "price": 300}, *ITEMS[1:]])
    r = await client.delete("/api/v1/promotions/online-milk", headers=auth(ADMIN))
    assert r.status_code == 200
    assert (await client.post("/api/v1/promotions/publish", headers=auth(ADMIN))
            ).status_code == 200
    again = await client.post("/api/v1/orders", headers={**auth(ADMIN), **key}, json=body)
    assert again.status_code == 200 and again.json()["price"] == price
    got = (await client.get(f"/api/v1/orders/{order['order_id']}", headers=auth(TECH))).json()
    assert got["price"] == price
    # A new order prices with the new book: 2 x 300 + 250 member 220 (no coupon).
    r = await client.post("/api/v1/orders", headers=auth(ADMIN), json=order_body(
        lines=LINES, member_id=retail.member_id, idempotency_key="priced-0002"))
    assert r.status_code == 201 and r.json()["price"]["total"] == 820
    assert metric(registry, "storefleet_orders_placed_total", fulfilment="pickup") == 2


async def test_a_used_coupon_or_an_unpriced_sku_refuses_the_order_and_reserves_nothing(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    retail = await setup_retail(client)
    await setup_stores(client, STOCK)
    first = await client.post("/api/v1/orders", headers=auth(ADMIN), json=order_body(
        lines=LINES, member_id=retail.member_id, coupons=[retail.coupon],
        idempotency_key="coupon-0001"))
    assert first.status_code == 201, first.text
    second = await client.post("/api/v1/orders", headers=auth(ADMIN), json=order_body(
        lines=LINES, member_id=retail.member_id, coupons=[retail.coupon],
        idempotency_key="coupon-0002"))
    assert second.status_code == 422
    assert second.headers["content-type"].startswith("application/problem+json")
    assert second.json()["type"].endswith("/coupon_unusable")
    assert "redeemed" in second.json()["detail"]
    # Another member's coupon is not this shopper's to use.
    stranger = await client.post("/api/v1/orders", headers=auth(ADMIN), json=order_body(
        lines=LINES, coupons=[retail.coupon], idempotency_key="coupon-0003"))
    assert stranger.status_code == 422 and "wrong_member" in stranger.json()["detail"]

    r = await client.put("/api/v1/stores/S-mitte/stock", headers=auth(ADMIN),
                         json={"levels": {"caviar": 3}})  # in stock, but has no price
    assert r.status_code == 200
    unpriced = await client.post("/api/v1/orders", headers=auth(MANAGER), json=order_body(
        lines=[{"sku": "milk", "qty": 1}, {"sku": "caviar", "qty": 1}],
        idempotency_key="unpriced-02"))
    assert unpriced.status_code == 422, unpriced.text
    assert unpriced.json()["type"].endswith("/unknown_sku")
    assert "caviar" in unpriced.json()["detail"]
    # Only the first order took stock: every refusal rolled its reservation back.
    stock = (await client.get("/api/v1/stores/S-mitte/stock", headers=auth(TECH))).json()
    assert stock["levels"] == {"bread": 4, "caviar": 3, "cola": 5, "milk": 8}
    assert metric(registry, "storefleet_orders_rejected_total", reason="coupon_unusable") == 2
    assert metric(registry, "storefleet_orders_rejected_total", reason="unknown_sku") == 1


async def test_without_a_price_book_an_order_is_refused(client: httpx.AsyncClient,
                                                        registry: CollectorRegistry) -> None:
    await setup_stores(client, STOCK, prices=False)
    r = await client.post("/api/v1/orders", headers=auth(ADMIN),
                          json=order_body(idempotency_key="no-book-001"))
    assert r.status_code == 422 and r.json()["type"].endswith("/no_price_book")
    assert metric(registry, "storefleet_orders_rejected_total", reason="no_price_book") == 1


async def test_an_order_paid_at_the_store_earns_nothing_in_the_cloud(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """Its money is taken at the store's till, whose sale earns the points: once."""
    retail = await setup_retail(client)
    await setup_stores(client, STOCK)
    r = await client.post("/api/v1/orders", headers=auth(ADMIN), json=order_body(
        lines=LINES, member_id=retail.member_id, idempotency_key="at-store-01"))
    order = r.json()
    assert order["payment"]["state"] == "at_store" and order["price"]["points_earned"] > 0
    app = client.app  # type: ignore[attr-defined]
    reg = CollectorRegistry()
    proc = BatchProcessor(app.state.cloud.writer, clock=clock, max_payload=65_536,
                          hooks=ingest_hooks(reg, retail=app.state.retail,
                                             orders=OrderMetrics(reg)))
    proc.process([status("S-mitte", f"a{n}", order["order_id"], step) for n, step in
                  enumerate(("accepted", "picking", "ready", "handed_over"))])
    got = (await client.get(f"/api/v1/orders/{order['order_id']}", headers=auth(TECH))).json()
    assert got["status"] == "handed_over"
    with app.state.cloud.reader() as s:
        assert points.balance(s, retail.member_id) == 0
    assert metric(reg, "storefleet_order_points_earned_total") == 0
