"""A sale records exactly what the shopper was charged (issue 11). A member's coupon shows
on every cart the member signs into: applying it reserves it for that cart, and a payment
whose QR no longer matches the basket (the coupon used elsewhere meanwhile) is refused and
records nothing. Real cart driver, cart-screen server over HTTP, the till's PosService on
its SQLite ledger."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from cloud.loyalty.sale import SaleData
from edge_agent.cartscreen.backend import RESERVATION_S
from edge_agent.cartscreen.checkout import cart_till
from edge_agent.cartscreen.payment import SIGNATURE_HEADER, sign
from edge_agent.pos.ledger import PosLedger
from edge_agent.pos.sales import PosMetrics
from protocols import encode
from protocols.cart import CartSessionMsg
from tests.edge_agent.cartscreen.rig import CEREAL, MILK, Rig, running_rig

SECRET = "test-payment-secret"
TOM = "SFM:M0004"  # the member of the report


@contextlib.asynccontextmanager
async def store(tmp_path: Path, **settings: Any) -> AsyncIterator[Rig]:
    """The cart rig with the till recording cart checkouts, as the agent wires it."""
    async with running_rig(tmp_path, **settings) as rig:
        ledger = PosLedger(tmp_path / "pos.db")
        await ledger.open()
        rig.in_aisle.use_till(cart_till(rig.in_aisle, ledger=ledger, sink=rig.ctx,
                                        clock=rig.ctx.clock, metrics=PosMetrics(rig.ctx.registry),
                                        online=lambda: True))
        try:
            yield rig
        finally:
            await ledger.close()


async def shopper(rig: Rig, cart: str) -> str:
    """Tom signs into ``cart`` and scans cereal and two milks; the session id."""
    sid = f"sess-{cart}-{rig.ctx.clock.now_ms()}"
    await rig.session(cart, sid, TOM)
    await rig.item(cart, sid, CEREAL)
    await rig.item(cart, sid, MILK, 2)
    return sid


async def apply(rig: Rig, cart: str, code: str) -> httpx.Response:
    return await rig.http.post(f"/api/cart/{cart}/coupons/{code}/apply")


def metric(rig: Rig, name: str, **labels: str) -> float:
    return rig.ctx.registry.get_sample_value(name, labels) or 0.0


def sales(rig: Rig) -> dict[str, SaleData]:
    return {e.id: SaleData.model_validate(e.data) for e in rig.ctx.events if e.kind == "sale"}


def charged(rig: Rig, sale_id: str) -> int:
    [event] = [e for e in rig.ctx.events if e.kind == "sale" and e.id == sale_id]
    return int(event.data["charged"])


async def notify(rig: Rig, co: dict[str, Any], ref: str) -> httpx.Response:
    body = json.dumps({"payload": co["payload"], "amount": co["total"], "currency": "CNY",
                       "provider_ref": ref}).encode()
    return await rig.http.post("/api/payments/notify", content=body, headers={
        "content-type": "application/json", SIGNATURE_HEADER: sign(SECRET, body)})


async def test_a_coupon_applied_on_one_cart_is_refused_on_another(tmp_path: Path) -> None:
    """The report: Tom signed into carts 01 and 03, the same code applied on both, both
    checked out, 01 paid, then 03: its QR said 62.80 and its sale said 67.80."""
    async with store(tmp_path) as rig:
        sid1 = await shopper(rig, "01")
        await shopper(rig, "03")
        [code] = await rig.dwell("01", sid1, "M0004", 3)
        # The member's coupon shows on both carts ...
        listed = (await rig.http.get("/api/cart/03/state")).json()["coupons"]
        assert code in [c["code"] for c in listed]
        assert (await apply(rig, "01", code)).status_code == 200
        # ... but only the cart that applied it first can use it.
        refused = await apply(rig, "03", code)
        assert refused.status_code == 409
        assert refused.json()["detail"] == "coupon in use on another cart"
        assert metric(rig, "storefleet_cartscreen_coupon_refused_total", reason="in_use") == 1

        co1 = (await rig.http.post("/api/cart/01/checkout")).json()
        co3 = (await rig.http.post("/api/cart/03/checkout")).json()
        assert co1["total"] == co3["total"] - 500  # the coupon on 01 only
        for cart, co in (("01", co1), ("03", co3)):
            paid = await rig.http.post(f"/api/cart/{cart}/checkout/{co['checkout_id']}/paid")
            assert paid.status_code == 200
            receipt = paid.json()
            # One amount: the QR, the receipt, the sale recorded, what was charged.
            data = sales(rig)[co["checkout_id"]]
            assert co["total"] == receipt["total"] == receipt["charged"] \
                == data.totals.paid == charged(rig, co["checkout_id"])
        assert metric(rig, "storefleet_cartscreen_checkout_mismatch_total") == 0
        assert [e.data["code"] for e in rig.ctx.events if e.kind == "coupon_redeemed"] == [code]


async def test_the_reservation_ends_with_remove_session_end_or_timeout(
        tmp_path: Path) -> None:
    async with store(tmp_path) as rig:
        sid1 = await shopper(rig, "01")
        sid3 = await shopper(rig, "03")
        [code] = await rig.dwell("01", sid1, "M0004", 3)
        backend = rig.in_aisle.backend
        assert (await apply(rig, "01", code)).status_code == 200
        assert (await apply(rig, "03", code)).status_code == 409
        # 01 takes it off its basket: 03 may have it.
        assert code not in (await backend.remove("01", code))["coupons_applied"]
        assert (await apply(rig, "03", code)).status_code == 200
        assert (await apply(rig, "01", code)).status_code == 409
        # 03's session ends (the shopper walks away): 01 may have it again.
        await rig.ctx.deliver_local("cart", "03", "session", encode(CartSessionMsg(
            session_id=sid3, action="end", ts=rig.ctx.clock.now_ms())))
        assert (await apply(rig, "01", code)).status_code == 200
        # 01 keeps it applied but never checks out: after the timeout a new cart may.
        await shopper(rig, "05")
        assert (await apply(rig, "05", code)).status_code == 409
        rig.ctx.clock.advance(RESERVATION_S + 1)  # type: ignore[attr-defined]
        assert (await apply(rig, "05", code)).status_code == 200


async def test_a_payment_for_a_stale_amount_is_refused_and_records_nothing(
        tmp_path: Path) -> None:
    """01 shows its QR with the coupon and its shopper is slow to pay; the reservation
    times out, 03 applies the coupon and pays. 01's payment notice (the discounted amount)
    is refused: no sale recorded at full price; 01 checks out again and pays in full."""
    async with store(tmp_path, payment_confirmation="provider", payment_secret=SECRET) as rig:
        sid1 = await shopper(rig, "01")
        await shopper(rig, "03")
        [code] = await rig.dwell("01", sid1, "M0004", 3)
        assert (await apply(rig, "01", code)).status_code == 200
        stale = (await rig.http.post("/api/cart/01/checkout")).json()
        rig.ctx.clock.advance(RESERVATION_S + 1)  # type: ignore[attr-defined]
        assert (await apply(rig, "03", code)).status_code == 200
        co3 = (await rig.http.post("/api/cart/03/checkout")).json()
        assert (await notify(rig, co3, "p-03")).status_code == 200
        assert co3["total"] == stale["total"]  # both QRs counted the coupon

        refused = await notify(rig, stale, "p-01")
        assert refused.status_code == 409 and "nothing was recorded" in refused.json()["detail"]
        assert stale["checkout_id"] not in sales(rig)
        assert metric(rig, "storefleet_cartscreen_checkout_mismatch_total") == 1
        assert metric(rig, "storefleet_cartscreen_payment_notices_total",
                      outcome="stale_amount") == 1
        assert (await rig.http.get("/api/cart/01/state")).json()["receipt"] is None
        # The retried notice finds no open checkout; the shopper checks out again.
        assert (await notify(rig, stale, "p-01-retry")).status_code == 404
        again = (await rig.http.post("/api/cart/01/checkout")).json()
        assert again["total"] == stale["total"] + 500
        assert (await notify(rig, again, "p-01b")).status_code == 200
        for co in (co3, again):
            data = sales(rig)[co["checkout_id"]]
            assert co["total"] == data.totals.paid == charged(rig, co["checkout_id"])
        assert [e.data["code"] for e in rig.ctx.events if e.kind == "coupon_redeemed"] == [code]


async def test_of_two_coupons_of_one_kind_only_one_is_applied_and_used(
        tmp_path: Path) -> None:
    """A second rule hands out the same "5 off your basket": Tom holds two codes of it."""
    again = {"id": "grocery-again", "zone": "grocery", "dwell_ms": 2000,
             "coupon": {"engine_code": "GROCERY5", "title": "5 off your basket"}}
    async with store(tmp_path, trigger_rules=(again,)) as rig:
        sid = await shopper(rig, "01")
        first, second = await rig.dwell("01", sid, "M0004", 3)
        assert (await apply(rig, "01", first)).status_code == 200
        refused = await apply(rig, "01", second)
        assert refused.status_code == 409
        assert refused.json()["detail"] == "a coupon of this kind is already applied"
        co = (await rig.http.post("/api/cart/01/checkout")).json()
        receipt = (await rig.http.post(
            f"/api/cart/01/checkout/{co['checkout_id']}/paid")).json()
        assert receipt["coupons_redeemed"] == [first]
        assert [e.data["code"] for e in rig.ctx.events if e.kind == "coupon_redeemed"] == \
            [first]
        kept = await rig.in_aisle.ledger.by_code(second)
        assert kept is not None and kept.usable(rig.ctx.clock.now_ms())
        wallet = (await rig.http.get("/api/cart/01/state")).json()["coupons"]
        assert second in [c["code"] for c in wallet]
