"""Paying an online order with the provider-neutral signed notice carts use (decision
0067): dispatched on payment only; wrong amount, bad signature, replays and unknown
orders refused and counted; idempotent; an unpaid order expires and gives its stock
back; a handed-over order earns its member's points once, through ingest and the
loyalty hook."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.ingest.batch import BatchProcessor
from cloud.loyalty import points
from cloud.main import create_app, ingest_hooks
from cloud.orders.metrics import OrderMetrics
from cloud.orders.payments import PAYMENT_WINDOW_MS, expire_unpaid
from cloud.publish import MemoryPublisher
from protocols import topics
from protocols.clock import ManualClock
from protocols.codec import decode
from protocols.orders import OrderDispatch
from protocols.payments import SIGNATURE_HEADER, sign
from tests.cloud.conftest import ADMIN, api_client, auth, make_settings, metric
from tests.cloud.orders.retail import setup_retail
from tests.cloud.orders.test_orders_api import order_body, setup_stores
from tests.cloud.orders.test_status_and_ranges import status

SECRET = "gateway-secret-0123456789"
NOTIFY = "/api/v1/order-payments/notify"
LINES = [{"sku": "milk", "qty": 2}, {"sku": "bread", "qty": 1}]


@pytest.fixture
async def client(db_url: str, publisher: MemoryPublisher, clock: ManualClock,
                 registry: CollectorRegistry) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(db_url, order_payment_secret=SECRET), registry=registry,
                     publisher=publisher, clock=clock)
    async with api_client(app) as c:
        c.app = app  # type: ignore[attr-defined]
        yield c


def notice(payload: str, amount: int, *, ref: str = "psp-0001",
           currency: str = "EUR") -> bytes:
    return json.dumps({"payload": payload, "amount": amount, "currency": currency,
                       "provider_ref": ref}).encode()


async def notify(client: httpx.AsyncClient, body: bytes, *, secret: str = SECRET,
                 signature: str | None = None) -> httpx.Response:
    return await client.post(NOTIFY, content=body, headers={
        SIGNATURE_HEADER: signature or sign(secret, body),
        "Content-Type": "application/json"})


async def place(client: httpx.AsyncClient, key: str, **kw: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/orders", headers=auth(ADMIN),
                          json=order_body(lines=LINES, idempotency_key=key, **kw))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_an_order_is_dispatched_on_payment_and_bad_notices_are_refused(
    client: httpx.AsyncClient, publisher: MemoryPublisher, registry: CollectorRegistry
) -> None:
    await setup_retail(client)
    await setup_stores(client, {"S-mitte": {"milk": 10, "bread": 5}})
    order = await place(client, "pay-0001")
    pay = order["payment"]
    total = order["price"]["total"]
    assert (pay["state"], pay["amount"], pay["currency"]) == ("due", total, "EUR") and total
    assert pay["payload"].startswith(f"SFPAY:S-mitte:order:{order['order_id']}:{total}:EUR:")
    assert order["dispatch"] == "pending" and publisher.on(topics.orders("S-mitte")) == []
    r = await client.post(f"/api/v1/orders/{order['order_id']}/dispatch", headers=auth(ADMIN))
    assert r.status_code == 409 and r.json()["type"].endswith("/unpaid")

    good = notice(pay["payload"], total)
    refused = [
        (await notify(client, good, secret="not-the-gateway-secret"), 401, "bad_signature"),
        (await notify(client, good, signature="sha256=00"), 401, "bad_signature"),
        (await notify(client, b'{"payload": 1}'), 422, "bad_notice"),
        (await notify(client, notice(pay["payload"], total - 1)), 409, "amount_mismatch"),
        (await notify(client, notice(pay["payload"], total, currency="USD")), 409,
         "amount_mismatch"),
        (await notify(client, notice(pay["payload"].replace(order["order_id"], "nope"),
                                     total)), 404, "unknown_order"),
        (await notify(client, notice(pay["payload"].rsplit(":", 1)[0] + ":forged", total)),
         404, "unknown_order"),
    ]
    for resp, code, outcome in refused:
        assert resp.status_code == code, (outcome, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json()["type"].endswith(f"/{outcome}")
    assert publisher.on(topics.orders("S-mitte")) == []  # nothing refused paid anything

    paid = await notify(client, good)
    assert paid.status_code == 200, paid.text
    assert paid.json()["payment"]["state"] == "paid" and paid.json()["dispatch"] == "published"
    sent = publisher.on(topics.orders("S-mitte"))
    assert len(sent) == 1
    msg = decode(sent[0].payload, OrderDispatch)
    assert (msg.order_id, msg.payment, msg.total) == (order["order_id"], "paid", total)

    again = await notify(client, good)  # the gateway retries: the same answer, no re-send
    assert again.status_code == 200 and again.json()["payment"] == paid.json()["payment"]
    assert len(publisher.on(topics.orders("S-mitte"))) == 1
    twice = await notify(client, notice(pay["payload"], total, ref="psp-0002"))
    assert twice.status_code == 409 and twice.json()["type"].endswith("/already_paid")
    other = await place(client, "pay-0002")  # paid with the first order's reference
    replay = await notify(client, notice(other["payment"]["payload"], total))
    assert replay.status_code == 409 and replay.json()["type"].endswith("/replay")

    count = lambda o: metric(registry, "storefleet_order_payment_notices_total",  # noqa: E731
                             outcome=o)
    assert (count("paid"), count("duplicate"), count("bad_signature"), count("bad_notice"),
            count("amount_mismatch"), count("unknown_order"), count("already_paid"),
            count("replay")) == (1, 1, 2, 1, 2, 2, 1, 1)
    got = (await client.get(f"/api/v1/orders/{other['order_id']}", headers=auth(ADMIN))).json()
    assert got["payment"]["state"] == "due" and got["dispatch"] == "pending"


async def test_an_unpaid_order_expires_and_gives_its_stock_and_coupon_back(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    retail = await setup_retail(client)
    await setup_stores(client, {"S-mitte": {"milk": 10, "bread": 5}})
    order = await place(client, "expire-001", member_id=retail.member_id,
                        coupons=[retail.coupon])
    app = client.app  # type: ignore[attr-defined]
    with app.state.cloud.writer.begin() as s:
        assert expire_unpaid(s, now_ms=clock.now_ms() + PAYMENT_WINDOW_MS - 1) == 0
    with app.state.cloud.writer.begin() as s:
        assert expire_unpaid(s, now_ms=clock.now_ms() + PAYMENT_WINDOW_MS) == 1
    got = (await client.get(f"/api/v1/orders/{order['order_id']}", headers=auth(ADMIN))).json()
    assert got["status"] == "cancelled"
    stock = (await client.get("/api/v1/stores/S-mitte/stock", headers=auth(ADMIN))).json()
    assert stock["levels"] == {"bread": 5, "milk": 10}
    coupon = (await client.get(f"/api/v1/coupons/{retail.coupon}", headers=auth(ADMIN))).json()
    assert coupon["redeemed"] is False
    late = await notify(client, notice(order["payment"]["payload"], order["price"]["total"]))
    assert late.status_code == 409 and late.json()["type"].endswith("/cancelled")


async def test_a_paid_order_earns_its_points_once_when_handed_over(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    retail = await setup_retail(client)
    await setup_stores(client, {"S-mitte": {"milk": 10, "bread": 5}})
    order = await place(client, "earn-0001", member_id=retail.member_id)
    earned = order["price"]["points_earned"]
    assert earned == 5  # 1 point per 100 paid, floored per line: 360 -> 3, 220 -> 2
    oid = order["order_id"]
    app = client.app  # type: ignore[attr-defined]
    reg = CollectorRegistry()
    proc = BatchProcessor(app.state.cloud.writer, clock=clock, max_payload=65_536,
                          hooks=ingest_hooks(reg, retail=app.state.retail,
                                             orders=OrderMetrics(reg)))

    def balance() -> int:
        with app.state.cloud.reader() as s:
            return points.balance(s, retail.member_id)

    proc.process([status("S-mitte", "h1", oid, "accepted"), status("S-mitte", "h2", oid,
                                                                   "picking"),
                  status("S-mitte", "h3", oid, "ready")])
    assert balance() == 0  # nothing before the goods are with the member
    paid = await notify(client, notice(order["payment"]["payload"], order["price"]["total"]))
    assert paid.status_code == 200
    proc.process([status("S-mitte", "h4", oid, "handed_over")])
    proc.process([status("S-mitte", "h4", oid, "handed_over"),  # redelivered
                  status("S-mitte", "h5", oid, "handed_over")])  # re-reported: noop
    assert balance() == earned
    assert metric(reg, "storefleet_order_points_earned_total") == earned
    with app.state.cloud.reader() as s:
        ops = points.lots(s, retail.member_id)
    assert [lot.remaining for lot in ops] == [earned]
