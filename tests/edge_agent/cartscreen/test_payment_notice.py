"""Cart checkouts confirmed by the payment provider's signed notice (``payment.py``), over
real HTTP and the cart's real WebSocket; the screen's own "I have paid" is refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from edge_agent.cartscreen.payment import SIGNATURE_HEADER, QrPayload, sign
from protocols.triggers import CartScreenPush
from tests.edge_agent.cartscreen.rig import CEREAL, MILK, Rig, running_rig

SECRET = "test-payment-secret"


def _body(payload: str, amount: int, currency: str = "CNY", ref: str = "prov-1") -> bytes:
    return json.dumps({"payload": payload, "amount": amount, "currency": currency,
                       "provider_ref": ref}).encode()


async def _notify(rig: Rig, body: bytes, signature: str | None = "sign") -> Any:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers[SIGNATURE_HEADER] = sign(SECRET, body) if signature == "sign" else signature
    return await rig.http.post("/api/payments/notify", content=body, headers=headers)


def _count(rig: Rig, outcome: str) -> float:
    return rig.ctx.registry.get_sample_value(
        "storefleet_cartscreen_payment_notices_total", {"outcome": outcome}) or 0.0


async def _checkout(rig: Rig) -> dict[str, Any]:
    await rig.session("C1", "sess-1")
    await rig.item("C1", "sess-1", CEREAL)
    await rig.item("C1", "sess-1", MILK, 2)
    co: dict[str, Any] = (await rig.http.post("/api/cart/C1/checkout")).json()
    assert co["total"] == 2590 + 2 * 1490
    return co


async def test_a_signed_notice_confirms_the_checkout_once(tmp_path: Path) -> None:
    async with running_rig(tmp_path, payment_confirmation="provider",
                           payment_secret=SECRET) as rig:
        state = (await rig.http.get("/api/cart/C1/state")).json()
        assert state["payment_confirmation"] == "provider"
        co = await _checkout(rig)
        # the shopper's button does not confirm a payment here
        refused = await rig.http.post(f"/api/cart/C1/checkout/{co['checkout_id']}/paid")
        assert refused.status_code == 403 and "provider" in refused.json()["detail"]
        assert (await rig.http.get("/api/cart/C1/state")).json()["receipt"] is None

        port = rig.in_aisle.server.port  # type: ignore[union-attr]
        async with connect(f"ws://127.0.0.1:{port}/ws/cart/C1") as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "hello"
            ok = await _notify(rig, _body(co["payload"], co["total"]))
            assert ok.status_code == 200
            receipt = ok.json()
            assert receipt["receipt_id"] == co["checkout_id"] and receipt["total"] == co["total"]
            pushed: list[CartScreenPush] = []
            while not any(m.type == "receipt" for m in pushed):
                pushed.append(CartScreenPush.model_validate_json(
                    await asyncio.wait_for(ws.recv(), 5)))
        [screen] = [m for m in pushed if m.type == "receipt"]
        assert screen.data["receipt_id"] == co["checkout_id"]  # the screen shows it at once

        # the provider retries: the same receipt, nothing recorded twice
        again = await _notify(rig, _body(co["payload"], co["total"], ref="prov-1-retry"))
        assert again.status_code == 200 and again.json() == receipt
        assert _count(rig, "confirmed") == 1 and _count(rig, "duplicate") == 1
        assert (await rig.http.get("/api/cart/C1/receipt")).json()["receipt_id"] == \
            co["checkout_id"]


async def test_bad_notices_are_refused_counted_and_leave_the_checkout_open(
        tmp_path: Path) -> None:
    async with running_rig(tmp_path, payment_confirmation="provider",
                           payment_secret=SECRET) as rig:
        co = await _checkout(rig)
        good = _body(co["payload"], co["total"])
        qr = QrPayload.parse(co["payload"])
        other_checkout = str(QrPayload(qr.store_id, qr.cart_id, "0" * 16, qr.amount,
                                       qr.currency, qr.digest))
        other_store = str(QrPayload("S999", qr.cart_id, qr.checkout_id, qr.amount,
                                    qr.currency, qr.digest))
        cases = [
            (await _notify(rig, good, signature=None), 401, "bad_signature"),
            (await _notify(rig, good, signature=sign("another-secret", good)), 401,
             "bad_signature"),
            (await _notify(rig, good, signature=sign(SECRET, good + b" ")), 401,
             "bad_signature"),  # the body was changed after signing
            (await _notify(rig, _body(co["payload"], co["total"] - 1)), 409, "amount_mismatch"),
            (await _notify(rig, _body(co["payload"], co["total"], currency="EUR")), 409,
             "amount_mismatch"),
            (await _notify(rig, _body(other_checkout, co["total"])), 404, "unknown_checkout"),
            (await _notify(rig, _body(other_store, co["total"])), 404, "unknown_checkout"),
            (await _notify(rig, b"{not json"), 422, "bad_notice"),
            (await _notify(rig, _body("SFPAY:S001:C1", 1)), 422, "bad_notice"),
        ]
        for response, status, _ in cases:
            assert response.status_code == status, response.text
            assert response.json()["detail"]
        for outcome in ("bad_signature", "amount_mismatch", "unknown_checkout", "bad_notice"):
            assert _count(rig, outcome) == sum(1 for *_, o in cases if o == outcome)
        assert _count(rig, "confirmed") == 0
        assert (await rig.http.get("/api/cart/C1/state")).json()["receipt"] is None
        # nothing was lost: the real notice still confirms the open checkout
        ok = await _notify(rig, good)
        assert ok.status_code == 200 and ok.json()["receipt_id"] == co["checkout_id"]


async def test_without_a_secret_no_notice_is_trusted(tmp_path: Path) -> None:
    async with running_rig(tmp_path, payment_confirmation="provider") as rig:
        co = await _checkout(rig)
        response = await _notify(rig, _body(co["payload"], co["total"]))
        assert response.status_code == 503 and "payment_secret" in response.json()["detail"]
        assert _count(rig, "not_configured") == 1
