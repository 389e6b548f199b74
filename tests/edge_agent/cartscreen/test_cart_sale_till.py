"""A cart checkout recorded as a sale names the cart it was paid at (the sale's
``till_id``, printed "Till <id>" on a receipt), not the cart fleet's device; the events
still come from the fleet's device, the till that recorded them."""

from __future__ import annotations

from pathlib import Path

from edge_agent.cartscreen.checkout import CART_TILL_ID, cart_till
from edge_agent.pos.ledger import PosLedger
from edge_agent.pos.render import render_receipt
from edge_agent.pos.sales import PosMetrics, Tenders
from pricing import Line
from tests.edge_agent.cartscreen.rig import CEREAL, MILK, running_rig

CART = "S001-smartcart-01"  # as the whole-store simulator names its carts


async def test_a_cart_sale_names_the_cart_it_was_paid_at(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        ledger = PosLedger(tmp_path / "pos.db")
        await ledger.open()
        try:
            till = cart_till(rig.in_aisle, ledger=ledger, sink=rig.ctx, clock=rig.ctx.clock,
                             metrics=PosMetrics(rig.ctx.registry), online=lambda: True)
            rig.in_aisle.use_till(till)
            await rig.session(CART, "sess-1")
            await rig.item(CART, "sess-1", CEREAL)
            await rig.item(CART, "sess-1", MILK)
            co = (await rig.http.post(f"/api/cart/{CART}/checkout")).json()
            paid = await rig.http.post(f"/api/cart/{CART}/checkout/{co['checkout_id']}/paid")
            assert paid.status_code == 200
            [sale] = [e for e in rig.ctx.events if e.kind == "sale"]
            assert sale.id == co["checkout_id"] and sale.device_id == CART_TILL_ID
            assert sale.data["till_id"] == CART and sale.data["channel"] == "cart"

            # the sale's receipt (the cart till has no printer; as a printer would print it)
            other = await till.sell([Line(line_id="l-1", sku=MILK, qty=1)],
                                    tenders=Tenders(method="cart-pay"), till_id="C7")
            assert other.receipt.till_id == "C7"
            assert b"Till C7 " in render_receipt(other.receipt)
            assert next(e for e in rig.ctx.events if e.id == other.sale_id) \
                .data["till_id"] == "C7"
        finally:
            await ledger.close()
