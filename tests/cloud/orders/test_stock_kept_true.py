"""Stock kept true by what the stores sell (decision 0067): till and cart sales, vends
and refunds, in the formats the box makes them, published to a real Mosquitto and
ingested by the real worker with the cloud's own hooks, move the stock routing reads,
once per event however often it is re-sent; a store that sold out sends the next
order elsewhere."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.main import ingest_hooks
from cloud.orders.cabinets import set_cabinet
from cloud.orders.metrics import OrderMetrics
from pricing import Basket, Catalog, Item, Line, PromotionSnapshot, Store, price, refund
from protocols import mdb, topics
from protocols.clock import ManualClock
from protocols.ids import uuid7
from tests.cloud.conftest import (
    ADMIN,
    auth,
    make_settings,
    make_worker,
    metric,
    publish,
    running,
    wait_until,
)
from tests.cloud.orders.test_orders_api import order_body, setup_stores
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

TS = 1_767_225_600_000
CATALOG = Catalog.of([Item(sku="milk", price=200), Item(sku="bread", price=250),
                      Item(sku="cola", price=150)], version=1, currency="EUR")
NO_PROMOTIONS = PromotionSnapshot(version=1, currency="EUR", promotions=())
_seq = iter(range(1, 1_000))


def wire(store: str, kind: str, event_id: str, data: dict[str, Any],
         device: str, ts: int = TS) -> tuple[str, bytes]:
    body = {"v": 1, "id": event_id, "kind": kind, "store_id": store, "device_id": device,
            "seq": next(_seq), "ts": ts, "data": data}
    return topics.evt(store, kind), json.dumps(body).encode()


def sale(store: str, channel: str, lines: Sequence[tuple[str, int]]
         ) -> tuple[str, tuple[str, bytes], Any]:
    """A sale as ``edge_agent/pos/sales.py`` reports it (the fields stock and loyalty read)."""
    sale_id = uuid7(TS)
    basket = Basket(id=sale_id, currency="EUR", lines=tuple(
        Line(line_id=f"l{n}", sku=sku, qty=qty) for n, (sku, qty) in enumerate(lines, 1)))
    priced = price(basket, CATALOG, NO_PROMOTIONS, None, TS, Store(id=store, currency="EUR"))
    totals = {k: getattr(priced, k) for k in ("subtotal", "discount", "total", "paid",
                                              "points_earned", "points_used", "stored_value")}
    data = {"member_id": None, "channel": channel, "basket": basket.model_dump(mode="json"),
            "totals": totals, "priced": priced.to_dict(), "charged": priced.paid}
    return sale_id, wire(store, "sale", sale_id, data, "pos" if channel == "pos" else "cart-1"), \
        priced


def vend(store: str, session_id: str, sku: str, outcome: str) -> tuple[str, bytes]:
    """A vend as the vending driver reports it (``protocols.mdb``)."""
    s = mdb.Session(session_id=session_id, door=3, item=12, price=150, approved_amount=150,
                    outcome=outcome)
    return wire(store, "vend", mdb.vend_event_id(store, "vend-1", session_id),
                mdb.vend_event_data(s, device_id="vend-1", item_sku=sku), "vend-1")


async def levels(client: httpx.AsyncClient, store: str) -> dict[str, int]:
    r = await client.get(f"/api/v1/stores/{store}/stock", headers=auth(ADMIN))
    return dict(r.json()["levels"])


async def test_sales_vends_and_refunds_keep_stock_true_and_routing_follows(
    mosquitto: Mosquitto, db_url: str, client: httpx.AsyncClient
) -> None:
    await setup_stores(client, {"S-mitte": {"milk": 5, "bread": 3, "cola": 2},
                                "S-far": {"milk": 9, "bread": 9, "cola": 9}})
    app = client.app  # type: ignore[attr-defined]
    reg = CollectorRegistry()
    worker = make_worker(make_settings(db_url, mosquitto.url), reg,
                         hooks=ingest_hooks(reg, retail=app.state.retail,
                                            orders=OrderMetrics(reg)))
    till_id, till, till_priced = sale("S-mitte", "pos", [("bread", 2), ("milk", 1)])
    _, cart, _ = sale("S-mitte", "cart", [("milk", 1), ("cola", 1)])
    returned = refund(till_priced, {"l2": 1})  # the milk of the till sale comes back
    refund_id = uuid7(TS + 1)
    back = wire("S-mitte", "refund", refund_id,
                {"sale_id": till_id, "refund_id": refund_id, "paid": returned.paid,
                 "amount": returned.amount, "refund": returned.to_dict()}, "pos")
    vended, failed = vend("S-mitte", "s-1", "cola", "success"), vend("S-mitte", "s-2",
                                                                     "cola", "failure")
    async with running(worker):
        await publish(mosquitto.url, [till, cart, vended, failed])
        await wait_until(lambda: metric(reg, "storefleet_stock_moves_total", kind="vend",
                                        outcome="no_lines") == 1)
        await publish(mosquitto.url, [back, till, vended, cart])  # a refund, three re-sent
        await wait_until(lambda: metric(reg, "storefleet_stock_moves_total", kind="refund",
                                        outcome="applied") == 1)
        await wait_until(lambda: metric(reg, "storefleet_stock_moves_total", kind="sale",
                                        outcome="duplicate") == 2)
    # bread 3 - 2; milk 5 - 1 (till) - 1 (cart) + 1 (refund); cola 2 - 1 (cart) - 1 (vend)
    assert await levels(client, "S-mitte") == {"bread": 1, "milk": 4, "cola": 0}
    assert metric(reg, "storefleet_stock_moves_total", kind="sale", outcome="applied") == 2
    assert metric(reg, "storefleet_stock_moves_total", kind="vend", outcome="applied") == 1
    assert metric(reg, "storefleet_stock_moves_total", kind="vend", outcome="duplicate") == 1
    assert metric(reg, "storefleet_stock_short_units_total") == 0

    # S-mitte (nearest) sold its cola: the order goes to S-far; bread it still has.
    r = await client.post("/api/v1/orders", headers=auth(ADMIN), json=order_body(
        lines=[{"sku": "cola", "qty": 1}], idempotency_key="after-vend-1"))
    assert r.status_code == 201 and r.json()["store_id"] == "S-far", r.text
    r = await client.post("/api/v1/orders", headers=auth(ADMIN), json=order_body(
        lines=[{"sku": "bread", "qty": 1}], idempotency_key="after-sale-1"))
    assert r.status_code == 201 and r.json()["store_id"] == "S-mitte", r.text


async def test_a_sale_beyond_the_cloud_level_floors_at_zero_and_is_counted(
    mosquitto: Mosquitto, db_url: str, client: httpx.AsyncClient
) -> None:
    await setup_stores(client, {"S-mitte": {"milk": 1}})
    app = client.app  # type: ignore[attr-defined]
    reg = CollectorRegistry()
    worker = make_worker(make_settings(db_url, mosquitto.url), reg,
                         hooks=ingest_hooks(reg, retail=app.state.retail,
                                            orders=OrderMetrics(reg)))
    _, oversold, _ = sale("S-mitte", "pos", [("milk", 3), ("bread", 1)])  # bread: untracked
    bad = wire("S-mitte", "sale", "bad-1", {"basket": {"lines": [{"sku": "milk"}]}}, "pos")
    # A pickup cabinet counts its goods by door (decision 0066): not the store's stock.
    with app.state.cloud.writer.begin() as s:
        set_cabinet(s, "S-mitte", "vend-1", lat=52.52, lon=13.40, accepts_orders=True,
                    doors={3: ("milk", 4)}, now_ms=TS)
    from_doors = vend("S-mitte", "s-9", "milk", "success")
    async with running(worker):
        await publish(mosquitto.url, [from_doors, oversold, bad])
        await wait_until(lambda: metric(reg, "storefleet_stock_moves_total", kind="sale",
                                        outcome="bad_payload") == 1)
        await wait_until(lambda: metric(reg, "storefleet_stock_short_units_total") == 2)
    assert await levels(client, "S-mitte") == {"milk": 0}
    assert metric(reg, "storefleet_stock_moves_total", kind="vend", outcome="cabinet") == 1


async def test_a_sale_collecting_an_order_takes_only_what_it_sold_beyond_it(
    mosquitto: Mosquitto, db_url: str, client: httpx.AsyncClient
) -> None:
    """Decision 0069: a lane sells a pickup order paid at the store; the order's units
    were reserved at placement, so only the rest of the sale is taken."""
    await setup_stores(client, {"S-mitte": {"milk": 5, "bread": 5, "cola": 5}})
    r = await client.post("/api/v1/orders", headers=auth(ADMIN), json=order_body(
        idempotency_key="collect-1"))  # milk 2, bread 1: reserved
    assert r.status_code == 201 and r.json()["store_id"] == "S-mitte", r.text
    order_id = r.json()["order_id"]
    assert await levels(client, "S-mitte") == {"milk": 3, "bread": 4, "cola": 5}
    app = client.app  # type: ignore[attr-defined]
    reg = CollectorRegistry()
    worker = make_worker(make_settings(db_url, mosquitto.url), reg,
                         hooks=ingest_hooks(reg, retail=app.state.retail,
                                            orders=OrderMetrics(reg)))

    def collecting(event_id: str, order: str, lines: list[tuple[str, int]]
                   ) -> tuple[str, bytes]:
        return wire("S-mitte", "sale", event_id, {"order_id": order, "basket": {"lines": [
            {"line_id": f"l{n}", "sku": sku, "qty": qty}
            for n, (sku, qty) in enumerate(lines, 1)]}}, "pos")

    # the order and one more milk and a cola; then exactly the order (another sale of
    # the same order id, as a second lane could not make: it moves nothing); then a
    # sale naming an order this cloud never placed (it reserved nothing: all taken)
    beyond = collecting("col-1", order_id, [("milk", 3), ("bread", 1), ("cola", 1)])
    exactly = collecting("col-2", order_id, [("milk", 2), ("bread", 1)])
    unknown = collecting("col-3", "o-unknown", [("cola", 2)])
    async with running(worker):
        await publish(mosquitto.url, [beyond, exactly, unknown, beyond])
        await wait_until(lambda: metric(reg, "storefleet_stock_moves_total", kind="sale",
                                        outcome="duplicate") == 1)
    assert await levels(client, "S-mitte") == {"milk": 2, "bread": 4, "cola": 2}
    assert metric(reg, "storefleet_stock_moves_total", kind="sale", outcome="order") == 1
    assert metric(reg, "storefleet_stock_moves_total", kind="sale", outcome="applied") == 2


async def test_a_sale_from_before_the_last_count_is_already_in_it(
    mosquitto: Mosquitto, db_url: str, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """A store offline for an hour reports its sales after HQ counted its shelves."""
    app = client.app  # type: ignore[attr-defined]
    reg = CollectorRegistry()
    worker = make_worker(make_settings(db_url, mosquitto.url), reg,
                         hooks=ingest_hooks(reg, retail=app.state.retail,
                                            orders=OrderMetrics(reg)))
    clock.advance(3600)  # seconds
    await setup_stores(client, {"S-mitte": {"milk": 10}})  # counted now, an hour after TS
    lines = {"lines": [{"line_id": "l1", "sku": "milk", "qty": 2}]}
    late = wire("S-mitte", "sale", "late-1", {"basket": lines}, "pos", ts=TS)
    fresh = wire("S-mitte", "sale", "fresh-1", {"basket": lines}, "pos",
                 ts=clock.now_ms() + 1)
    async with running(worker):
        await publish(mosquitto.url, [late, fresh])
        await wait_until(lambda: metric(reg, "storefleet_stock_moves_total", kind="sale",
                                        outcome="applied") == 2)
    assert await levels(client, "S-mitte") == {"milk": 8}  # only the sale after the count
    assert metric(reg, "storefleet_stock_stale_units_total") == 2
