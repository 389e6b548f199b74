"""The lane till over real HTTP (uvicorn on a free port): a lane terminal sells, the sale
goes into the real SQLite outbox as the till's ``sale`` event, the receipt prints on the
lane's own printer (ESC/POS simulator over TCP); tokens, bad requests, retries, refunds,
offline sales and many lanes at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from protocols.codec import encode
from protocols.orders import Customer, OrderDispatch, OrderLine
from tests.edge_agent.till.rig import WIDTH, LaneRig, lane_rig


def outbox_events(rig: LaneRig, kind: str) -> dict[str, dict[str, Any]]:
    """The outbox's ``kind`` events by id (read beside the writer: WAL)."""
    with contextlib.closing(sqlite3.connect(rig.workdir / "outbox.db")) as conn:
        rows = conn.execute("SELECT id, payload FROM rows WHERE topic LIKE ?",
                            (f"%/evt/{kind}",)).fetchall()
    return {row[0]: json.loads(row[1]) for row in rows}


async def sell(http: httpx.AsyncClient, items: list[tuple[str, int]], *,
               member: str | None = None, coupons: tuple[str, ...] = (),
               cash_extra: int | None = 1_000, cashier: str = "Anna") -> dict[str, Any]:
    r = await http.post("/till/v1/baskets")
    assert r.status_code == 201, r.text
    base = f"/till/v1/baskets/{r.json()['basket_id']}"
    for code, qty in items:
        r = await http.post(f"{base}/items", json={"code": code, "qty": qty})
        assert r.status_code == 200, r.text
    if member:
        r = await http.put(f"{base}/member", json={"member_id": member})
        assert r.status_code == 200, r.text
    for code in coupons:
        r = await http.post(f"{base}/coupons", json={"code": code})
        assert r.status_code == 200, r.text
    tender: dict[str, Any] = {"method": "card"} if cash_extra is None else {
        "method": "cash", "cash_given": r.json()["to_pay"] + cash_extra}
    r = await http.put(f"{base}/tender", json=tender)
    assert r.status_code == 200, r.text
    r = await http.post(f"{base}/complete", json={"cashier": cashier})
    assert r.status_code == 200, r.text
    sale: dict[str, Any] = r.json()
    return sale


async def test_a_lane_sells_over_http_into_the_outbox_and_prints_on_its_printer(
        tmp_path: Path) -> None:
    async with lane_rig(tmp_path, lanes=2, printers=2) as rig, rig.client(0) as lane1:
        r = await lane1.post("/till/v1/baskets")
        basket = r.json()
        base = f"/till/v1/baskets/{basket['basket_id']}"
        assert (await lane1.post(f"{base}/items", json={"code": "sku-00000"})).status_code \
            == 200
        await lane1.post(f"{base}/items", json={"code": "sku-00000"})  # same line, qty 2
        view = (await lane1.post(f"{base}/items", json={"code": "sku-00002", "qty": 3})).json()
        assert [(ln["code"], ln["qty"], ln["line_id"]) for ln in view["lines"]] == \
            [("sku-00000", 2, "1"), ("sku-00002", 3, "2")]
        # dairy 10 % off and 5.00 off past 20.00, allocated to the lines, which add up
        assert view["subtotal"] == sum(ln["unit_price"] * ln["qty"] for ln in view["lines"])
        assert view["discount"] >= 500 and \
            view["total"] == sum(ln["amount"] for ln in view["lines"])
        view = (await lane1.delete(f"{base}/items/sku-00002", params={"qty": 1})).json()
        assert view["lines"][1]["qty"] == 2
        view = (await lane1.put(f"{base}/member", json={"member_id": "M0004"})).json()
        assert view["member"] == {"member_id": "M0004", "tier": None}
        view = (await lane1.post(f"{base}/coupons", json={"code": "CMP-welcome"})).json()
        assert view["coupons"] == [{"code": "CMP-welcome", "state": "applies"}]
        cash = view["to_pay"] + 1_234
        view = (await lane1.put(f"{base}/tender",
                                json={"method": "cash", "cash_given": cash})).json()
        assert view["tender"]["change"] == 1_234
        sale = (await lane1.post(f"{base}/complete", json={"cashier": "Anna"})).json()

        assert sale["sale_id"] == basket["basket_id"] and sale["lane_id"] == "lane-1"
        assert sale["total"] == view["total"] and sale["paid"] == view["to_pay"]
        assert sale["change"] == 1_234 and sale["printed"] and not sale["offline"]
        assert sale["coupons_used"] == ["CMP-welcome"] and sale["points_earned"] > 0
        assert sale["receipt"]["till_id"] == "lane-1"
        assert sale["receipt"]["cashier"] == "Anna"
        # The sale event in the outbox: the till's device, naming the lane.
        event = outbox_events(rig, "sale")[sale["sale_id"]]
        assert event["device_id"] == "pos" and event["kind"] == "sale"
        data = event["data"]
        assert data["till_id"] == "lane-1" and data["member_id"] == "M0004"
        assert data["totals"]["paid"] == data["charged"] == sale["paid"]
        assert data["coupons_used"] == ["CMP-welcome"]
        # Printed on lane 1's printer, and nothing on lane 2's.
        page = (await rig.sims["printer-1"].wait_pages(1))[0]
        text = page.text(width=WIDTH)
        assert "Till lane-1" in text and "Cashier Anna" in text and sale["sale_id"] in text
        assert rig.sims["printer-2"].pages == []
        # The basket is gone: completing it again replays the same sale.
        again = (await lane1.post(f"{base}/complete")).json()
        assert again["sale_id"] == sale["sale_id"] and again["replayed"]
        assert len(outbox_events(rig, "sale")) == 1
        assert rig.metric("storefleet_lanes_sales_total", lane="lane-1") == 1


async def test_each_lane_prints_on_its_own_printer(tmp_path: Path) -> None:
    async with lane_rig(tmp_path, lanes=2, printers=2) as rig, \
            rig.client(0) as lane1, rig.client(1) as lane2:
        one, two = await asyncio.gather(sell(lane1, [("sku-00001", 1)]),
                                        sell(lane2, [("sku-00003", 1)]))
        p1 = (await rig.sims["printer-1"].wait_pages(1))[0].text(width=WIDTH)
        p2 = (await rig.sims["printer-2"].wait_pages(1))[0].text(width=WIDTH)
        assert one["sale_id"] in p1 and "Till lane-1" in p1 and two["sale_id"] not in p1
        assert two["sale_id"] in p2 and "Till lane-2" in p2 and one["sale_id"] not in p2


async def test_a_lane_whose_printer_is_not_running_sells_and_says_so(tmp_path: Path) -> None:
    async with lane_rig(tmp_path, lanes=1, lane_printer={0: "printer-gone"}) as rig, \
            rig.client(0) as http:
        sale = await sell(http, [("sku-00001", 1)])
        assert sale["printed"] is False and sale["sale_id"] in outbox_events(rig, "sale")
        assert rig.metric("storefleet_lanes_printer_missing_total", lane="lane-1") == 1


async def test_a_missing_or_wrong_token_is_401_and_counted(tmp_path: Path) -> None:
    async with lane_rig(tmp_path, lanes=2) as rig:
        async with rig.client(token="") as none:
            r = await none.post("/till/v1/baskets")
            assert r.status_code == 401 and r.json()["reason"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
        async with rig.client(token="x" * 40) as wrong:
            assert (await wrong.post("/till/v1/baskets")).status_code == 401
            assert (await wrong.get("/till/v1/lane")).status_code == 401
        assert rig.metric("storefleet_lanes_unauthorized_total", why="missing") == 1
        assert rig.metric("storefleet_lanes_unauthorized_total", why="wrong") == 2
        # a lane's basket is not another lane's
        async with rig.client(0) as lane1, rig.client(1) as lane2:
            assert (await lane2.get("/till/v1/lane")).json()["lane_id"] == "lane-2"
            bid = (await lane1.post("/till/v1/baskets")).json()["basket_id"]
            r = await lane2.post(f"/till/v1/baskets/{bid}/items", json={"code": "sku-00001"})
            assert r.status_code == 404 and r.json()["reason"] == "unknown_basket"


async def test_bad_requests_are_4xx_with_a_reason_and_counted(tmp_path: Path) -> None:
    async with lane_rig(tmp_path, lanes=1) as rig, rig.client(0) as http:
        bid = (await http.post("/till/v1/baskets")).json()["basket_id"]
        base = f"/till/v1/baskets/{bid}"

        async def refused(method: str, path: str, status: int, reason: str,
                          body: Any = None) -> None:
            r = await http.request(method, path, json=body)
            assert (r.status_code, r.json()["reason"]) == (status, reason), r.text
            assert r.json()["detail"]

        await refused("POST", f"{base}/complete", 409, "empty")
        await refused("POST", f"{base}/items", 404, "unknown_item", {"code": "nope"})
        await refused("POST", f"{base}/items", 422, "invalid", {"code": "sku-00001", "qty": 0})
        await refused("POST", f"{base}/items", 422, "invalid", {"sku": "sku-00001"})
        await refused("POST", "/till/v1/baskets/no-such/items", 404, "unknown_basket",
                      {"code": "sku-00001"})
        await refused("DELETE", f"{base}/items/sku-00001", 404, "not_in_basket")
        await http.post(f"{base}/items", json={"code": "sku-00001"})
        await refused("POST", f"{base}/complete", 409, "no_tender")
        await refused("PUT", f"{base}/member", 422, "invalid",
                      {"member_id": "M1", "phone": "+4915112345678"})
        await refused("PUT", f"{base}/tender", 409, "no_member",
                      {"method": "card", "points": 100})
        await refused("PUT", f"{base}/tender", 422, "invalid", {"method": "cheque"})
        await refused("PUT", f"{base}/tender", 422, "invalid",
                      {"method": "card", "cash_given": 100})
        await refused("PUT", f"{base}/tender", 409, "short_tender",
                      {"method": "cash", "cash_given": 1})
        await refused("POST", "/till/v1/sales/no-such-sale/refund", 404, "unknown_sale")
        r = await http.post(f"{base}/items", content=b"{" * 20_000,
                            headers={"content-type": "application/json"})
        assert (r.status_code, r.json()["reason"]) == (413, "too_large")
        for reason in ("empty", "unknown_item", "invalid", "unknown_basket", "no_tender",
                       "no_member", "short_tender", "unknown_sale", "too_large"):
            assert rig.metric("storefleet_lanes_refused_total", reason=reason) >= 1, reason
        assert rig.metric("storefleet_lanes_refused_total", reason="invalid") == 5
        # a basket only takes a sale once the cash covers it, and stays usable
        view = (await http.put(f"{base}/tender", json={"method": "card"})).json()
        sale = (await http.post(f"{base}/complete")).json()
        assert sale["paid"] == view["to_pay"] and sale["change"] == 0
        # at most max_open_baskets (4) open per lane
        for _ in range(4):
            assert (await http.post("/till/v1/baskets")).status_code == 201
        await refused("POST", "/till/v1/baskets", 409, "too_many_baskets")


async def test_refund_of_a_completed_sale(tmp_path: Path) -> None:
    async with lane_rig(tmp_path, lanes=2) as rig, \
            rig.client(0) as lane1, rig.client(1) as lane2:
        sale = await sell(lane1, [("sku-00001", 3), ("sku-00004", 1)], member="M0007")
        found = (await lane2.get(f"/till/v1/sales/{sale['sale_id']}")).json()
        lines = {ln["sku"]: ln for ln in found["lines"]}
        assert lines["sku-00001"]["qty"] == 3 and lines["sku-00001"]["returned"] == 0
        line_id = lines["sku-00001"]["line_id"]
        # refunded at another lane of the store: one unit of the first line
        r = await lane2.post(f"/till/v1/sales/{sale['sale_id']}/refund",
                             json={"lines": {line_id: 1}})
        assert r.status_code == 200, r.text
        refund = r.json()
        assert refund["paid"] == lines["sku-00001"]["paid"] // 3 and refund["lane_id"] == "lane-2"
        events = list(outbox_events(rig, "refund").values())
        assert len(events) == 1 and events[0]["data"]["sale_id"] == sale["sale_id"]
        assert events[0]["data"]["paid"] == refund["paid"]
        found = (await lane1.get(f"/till/v1/sales/{sale['sale_id']}")).json()
        assert {ln["sku"]: ln["returned"] for ln in found["lines"]}["sku-00001"] == 1
        # more than is left is refused; the rest (no lines: all) is not
        r = await lane1.post(f"/till/v1/sales/{sale['sale_id']}/refund",
                             json={"lines": {line_id: 3}})
        assert (r.status_code, r.json()["reason"]) == (409, "bad_refund")
        r = await lane1.post(f"/till/v1/sales/{sale['sale_id']}/refund")
        assert r.status_code == 200 and r.json()["paid"] == sale["paid"] - refund["paid"]
        assert len(outbox_events(rig, "refund")) == 2


async def test_offline_the_lane_sells_as_the_till_does(tmp_path: Path) -> None:
    async with lane_rig(tmp_path, lanes=1) as rig, rig.client(0) as http:
        rig.store.online[0] = False
        bid = (await http.post("/till/v1/baskets")).json()["basket_id"]
        base = f"/till/v1/baskets/{bid}"
        await http.post(f"{base}/items", json={"code": "sku-00010", "qty": 4})
        r = await http.put(f"{base}/member", json={"phone": "+49 151 2345678"})
        assert (r.status_code, r.json()["reason"]) == (503, "needs_cloud")
        assert (await http.put(f"{base}/member", json={"member_id": "M0009"})).status_code \
            == 200
        await http.put(f"{base}/tender", json={"method": "card"})
        sale = (await http.post(f"{base}/complete")).json()
        assert sale["offline"] is True and sale["receipt"]["member"]["pending"] is True
        data = outbox_events(rig, "sale")[sale["sale_id"]]["data"]
        assert data["offline"] is True and data["points_pending"] is True


async def test_eight_lanes_at_once_lose_nothing(tmp_path: Path) -> None:
    async with lane_rig(tmp_path, lanes=8) as rig:
        clients = [rig.client(i) for i in range(8)]
        try:
            async def lane(i: int, http: httpx.AsyncClient) -> list[dict[str, Any]]:
                return [await sell(http, [(f"sku-{(i * 7 + k + n) % 500:05d}", 1 + n % 3)
                                          for n in range(4)]) for k in range(5)]

            sales = [s for per_lane in await asyncio.gather(
                *(lane(i, c) for i, c in enumerate(clients))) for s in per_lane]
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))
        ids = {s["sale_id"] for s in sales}
        assert len(ids) == 40 and ids == set(outbox_events(rig, "sale"))
        numbers = [s["receipt"]["sale_number"] for s in sales]
        assert sorted(numbers) == list(range(1, 41))  # one counter for the store's lanes
        assert {s["lane_id"] for s in sales} == {f"lane-{i}" for i in range(1, 9)}


async def test_openapi_document_and_keepalive_latency(tmp_path: Path) -> None:
    async with lane_rig(tmp_path, lanes=1) as rig, rig.client(0) as http:
        r = await http.get("/till", follow_redirects=True)
        assert r.status_code == 200 and 'id="scan-code"' in r.text  # the cashier screen
        doc = (await http.get("/till/openapi.json")).json()
        paths = doc["paths"]
        assert {"/till/v1/baskets", "/till/v1/baskets/{basket_id}/items",
                "/till/v1/baskets/{basket_id}/member", "/till/v1/baskets/{basket_id}/coupons",
                "/till/v1/baskets/{basket_id}/tender", "/till/v1/baskets/{basket_id}/complete",
                "/till/v1/sales/{sale_id}/refund"} <= set(paths)
        schemes = doc["components"]["securitySchemes"]
        assert any(s.get("scheme") == "bearer" for s in schemes.values())
        assert "401" in paths["/till/v1/baskets"]["post"]["responses"]
        # TCP_NODELAY on the server's connections: a keep-alive request is not held
        # ~40 ms by Nagle against the client's delayed ACK.
        bid = (await http.post("/till/v1/baskets")).json()["basket_id"]
        took = []
        for _ in range(20):
            t0 = time.perf_counter()
            r = await http.post(f"/till/v1/baskets/{bid}/items", json={"code": "sku-00001"})
            took.append(time.perf_counter() - t0)
            assert r.status_code == 200
        # with Nagle every one waits 40 ms or more; the fastest shows it on a busy machine
        assert min(took) < 0.030, took


async def test_a_whole_sale_in_one_request_prices_records_and_replays_like_a_basket(
        tmp_path: Path) -> None:
    """``POST /till/v1/sales``: the same basket sold interactively and in one request
    costs the same; sent again with its sale id it comes back, recorded once; a refused
    one (an unknown item) leaves no basket open and records nothing."""
    items = [("sku-00003", 2), ("sku-00007", 1), ("sku-00003", 1)]
    async with lane_rig(tmp_path, lanes=1) as rig, rig.client(0) as lane:
        stepwise = await sell(lane, items, member="M0004", cash_extra=None)
        body = {"sale_id": "T1-000042", "member": {"member_id": "M0004"},
                "lines": [{"code": c, "qty": q} for c, q in items],
                "tender": {"method": "card"}, "cashier": "Anna"}
        r = await lane.post("/till/v1/sales", json=body)
        assert r.status_code == 200, r.text
        once = r.json()
        assert once["sale_id"] == "T1-000042" and once["replayed"] is False
        for key in ("total", "paid", "points_earned", "charged"):
            assert once[key] == stepwise[key], key
        assert [ln["qty"] for ln in once["receipt"]["lines"]] == \
            [ln["qty"] for ln in stepwise["receipt"]["lines"]] == [3, 1]
        again = (await lane.post("/till/v1/sales", json=body)).json()
        assert again["replayed"] is True and again["sale_id"] == "T1-000042"
        bad = {**body, "sale_id": "T1-000043",
               "lines": [{"code": "sku-00003"}, {"code": "no-such-sku"}]}
        r = await lane.post("/till/v1/sales", json=bad)
        assert (r.status_code, r.json()["reason"]) == (404, "unknown_item")
        r = await lane.post("/till/v1/sales", json={**bad, "lines": []})
        assert (r.status_code, r.json()["reason"]) == (422, "invalid")
        assert rig.metric("storefleet_lanes_open_baskets") == 0
    sales = outbox_events(rig, "sale")
    assert {stepwise["sale_id"], "T1-000042"} == set(sales)


def order_dispatch(order_id: str, *, payment: str = "at_store", fulfilment: str = "pickup",
                   total: int = 1_000) -> bytes:
    """An order as the cloud dispatches it (``cmd/orders``)."""
    return encode(OrderDispatch(
        order_id=order_id, store_id="S001", fulfilment=fulfilment,  # type: ignore[arg-type]
        lines=[OrderLine(sku="sku-00003", qty=2), OrderLine(sku="sku-00007", qty=1)],
        customer=Customer(name="Ada", address="Main St 1"), member_id="M0004",
        created_ms=1, ts=2, currency="EUR", total=total,
        payment=payment))  # type: ignore[arg-type]


async def test_a_pickup_order_paid_at_a_lane_is_sold_once_and_handed_over(
        tmp_path: Path) -> None:
    """Decision 0069: the lane rings up the order's lines (and an extra item), the sale
    names the order, and the order is reported through every step to handed_over. A
    second sale of it, a paid, a delivery and an unknown order are refused."""
    async with lane_rig(tmp_path, lanes=1) as rig, rig.client(0) as lane:
        orders = rig.store.pos.orders
        for order_id, payment, fulfilment in (
                ("ord-at-store", "at_store", "pickup"), ("ord-paid", "paid", "pickup"),
                ("ord-delivery", "at_store", "delivery"), ("ord-basket", "at_store", "pickup")):
            assert await orders.handle(order_dispatch(
                order_id, payment=payment, fulfilment=fulfilment)) is not None
        r = await lane.post("/till/v1/sales", json={
            "sale_id": "T1-ORDER-1", "order_id": "ord-at-store",
            "lines": [{"code": "sku-00005", "qty": 1}], "tender": {"method": "card"}})
        assert r.status_code == 200, r.text
        sale = r.json()
        assert (sale["order_id"], sale["order_handed_over"]) == ("ord-at-store", True)
        assert [ln["qty"] for ln in sale["receipt"]["lines"]] == [2, 1, 1]
        stored = await rig.store.pos.ledger.order("ord-at-store")
        assert stored is not None and stored.status == "handed_over"
        refusals = {}
        for order_id in ("ord-at-store", "ord-paid", "ord-delivery", "no-such-order"):
            r = await lane.post("/till/v1/sales", json={
                "order_id": order_id, "tender": {"method": "card"}})
            refusals[order_id] = (r.status_code, r.json()["reason"])
        assert refusals == {"ord-at-store": (409, "order_closed"),
                            "ord-paid": (409, "order_paid"),
                            "ord-delivery": (409, "not_pickup"),
                            "no-such-order": (404, "unknown_order")}
        # the interactive flow: one basket holds an order; another lane's basket cannot
        first = (await lane.post("/till/v1/baskets")).json()["basket_id"]
        second = (await lane.post("/till/v1/baskets")).json()["basket_id"]
        r = await lane.put(f"/till/v1/baskets/{first}/order", json={"order_id": "ord-basket"})
        assert r.status_code == 200 and r.json()["order_id"] == "ord-basket", r.text
        assert [(ln["code"], ln["qty"]) for ln in r.json()["lines"]] == [
            ("sku-00003", 2), ("sku-00007", 1)]
        r = await lane.put(f"/till/v1/baskets/{second}/order", json={"order_id": "ord-basket"})
        assert (r.status_code, r.json()["reason"]) == (409, "order_in_basket")
        r = await lane.delete(f"/till/v1/baskets/{first}/order")
        assert r.status_code == 200 and (r.json()["order_id"], r.json()["lines"]) == (None, [])
        r = await lane.put(f"/till/v1/baskets/{second}/order", json={"order_id": "ord-basket"})
        assert r.status_code == 200, r.text
        stored = await rig.store.pos.ledger.order("ord-basket")
        assert stored is not None and stored.status == "accepted"  # not sold yet
    sales = outbox_events(rig, "sale")
    assert sales["T1-ORDER-1"]["data"]["order_id"] == "ord-at-store"
    data = sales["T1-ORDER-1"]["data"]
    assert [(ln["sku"], ln["qty"]) for ln in data["basket"]["lines"]] == [
        ("sku-00003", 2), ("sku-00007", 1), ("sku-00005", 1)]
    assert data["member_id"] == "M0004"  # the order's member, attached by the lane
    steps = sorted((e["data"]["status"], e["id"]) for e in outbox_events(
        rig, "order_status").values() if e["data"]["order_id"] == "ord-at-store")
    assert [s for s, _ in steps] == sorted(["accepted", "picking", "ready", "handed_over"])
    assert rig.metric("storefleet_lanes_orders_total", result="handed_over") == 1
    assert rig.metric("storefleet_lanes_refused_total", reason="order_closed") == 1
