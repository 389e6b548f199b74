"""Paying on the cart screen records one ``sale`` through the till's path (PosService,
channel ``cart``): same ledger, same events, same total as the payment QR and the
e-receipt, and a payment confirmation delivered again records nothing more."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.db.models_loyalty import PromotionPublication
from cloud.loyalty.sale import SaleData
from cloud.promotions.reprice import Repricer
from cloud.promotions.service import store_document
from cloud.promotions.signing import SnapshotSigner
from edge_agent.cartscreen import SAMPLE_DATA, InAisle, InAisleSettings
from edge_agent.cartscreen.checkout import cart_till
from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.cart import CartDriver
from edge_agent.drivers.testing import FakeContext
from edge_agent.inference.triggers import Location
from edge_agent.pos.cache import CacheMetrics, CatalogCache, PromotionCache, load_keys
from edge_agent.pos.ledger import PosLedger
from edge_agent.pos.sales import PosMetrics
from firmware_sim.layouts import DEFAULT_LAYOUT
from pricing import Basket, Catalog, Member, Store, price
from protocols import encode
from protocols.cart import CartItem, CartSessionMsg
from protocols.clock import ManualClock

MILK, CEREAL = "6901234568011", "6901234567892"
GROCERY = Location(x=12.0, y=10.0, zone="grocery", shelf="A1-1")
BUNDLE = json.loads(SAMPLE_DATA.read_text())


@dataclass
class Rig:
    ctx: FakeContext
    in_aisle: InAisle
    http: httpx.AsyncClient
    ledger: PosLedger

    async def shop(self, cart: str, member_qr: str) -> str:
        """A member with cereal and two milks, a grocery coupon applied; the coupon code."""
        sid = f"sess-{cart}"
        now = self.ctx.clock.now_ms()
        await self.ctx.deliver_local("cart", cart, "session", encode(CartSessionMsg(
            session_id=sid, action="start", member_qr=member_qr, ts=now)))
        for sku, qty in ((CEREAL, 1), (MILK, 2)):
            await self.ctx.deliver_local("cart", cart, "item", encode(CartItem(
                ts=now, session_id=sid, barcode=sku, qty=qty)))
        codes: list[str] = []
        for _ in range(15):  # 3 s in the grocery zone: the dwell rule fires
            got = await self.in_aisle.triggers.handle_scan(
                cart, session_id=sid, member_id=member_qr[4:], readings=[], location=GROCERY)
            codes += [c.code for c in got]
            self.ctx.clock.advance(0.2)  # type: ignore[attr-defined]
        [code] = codes
        assert (await self.http.post(f"/api/cart/{cart}/coupons/{code}/apply")).status_code == 200
        return code

    def events(self, kind: str) -> list[Any]:
        return [e for e in self.ctx.events if e.kind == kind]

    def sales_made(self) -> float:
        return self.ctx.registry.get_sample_value("storefleet_pos_sales_total",
                                                  {"mode": "online"}) or 0.0


def bundle_publication() -> PromotionPublication:
    """The bundle's promotions as the cloud publishes them, for every channel."""
    return PromotionPublication(
        version=7, currency=BUNDLE["promotions"]["currency"], published_ms=1_767_225_600_000,
        entries=[{"promotion": p, "stores": None, "channels": ["pos", "cart", "online"]}
                 for p in BUNDLE["promotions"]["promotions"]])


async def _rig(tmp_path: Path, *, signed: PromotionPublication | None) -> AsyncIterator[Rig]:
    clock = ManualClock()
    ctx = FakeContext(store_id="S001", clock=clock, registry=CollectorRegistry())
    carts = CartDriver(DeviceConfig("carts", "cart"), ctx)
    runner = asyncio.create_task(carts.run(), name="test-carts")
    await asyncio.sleep(0)
    pos_pricing = None
    if signed is not None:  # the till's verified caches, as the agent has them
        signer = SnapshotSigner.generate()
        promotions = PromotionCache(tmp_path / "pos" / "promotions.json", store_id="S001",
                                    keys=load_keys([k["public_key"]
                                                    for k in signer.public_keys()]),
                                    metrics=CacheMetrics(ctx.registry))
        assert await promotions.install(store_document(signed, "S001", signer))
        catalog = CatalogCache(tmp_path / "pos" / "catalog.json")
        await catalog.install(Catalog.model_validate(BUNDLE["catalog"]))

        def pos_pricing() -> Any:
            compiled = promotions.ruleset("cart")
            return None if compiled is None or catalog.catalog is None else (
                catalog.catalog, *compiled)
    in_aisle = InAisle(InAisleSettings(store_id="S001", data_dir=tmp_path, cartscreen_port=0,
                                       cartscreen_host="127.0.0.1", store_layout=DEFAULT_LAYOUT,
                                       retail_data=SAMPLE_DATA,
                                       payment_confirmation="screen"),
                       ctx=ctx, carts=lambda: carts, pos_pricing=pos_pricing)
    ledger = PosLedger(tmp_path / "pos.db")
    await ledger.open()
    in_aisle.use_till(cart_till(in_aisle, ledger=ledger, sink=ctx, clock=clock,
                                metrics=PosMetrics(ctx.registry), online=lambda: True))
    await in_aisle.start()
    assert in_aisle.url is not None
    http = httpx.AsyncClient(base_url=in_aisle.url, timeout=5)
    try:
        yield Rig(ctx, in_aisle, http, ledger)
    finally:
        await http.aclose()
        await in_aisle.stop()
        await ledger.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in _rig(tmp_path, signed=None):
        yield r


@pytest.fixture
async def signed_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in _rig(tmp_path, signed=bundle_publication()):
        yield r


async def test_paying_records_one_sale_with_the_screen_total(rig: Rig) -> None:
    code = await rig.shop("C1", "SFM:M0001")
    co = (await rig.http.post("/api/cart/C1/checkout")).json()
    assert rig.events("sale") == []  # showing the QR sells nothing yet
    url = f"/api/cart/C1/checkout/{co['checkout_id']}/paid"
    # The payment provider's confirmation arrives twice at once, then once more.
    first, second = await asyncio.gather(rig.http.post(url), rig.http.post(url))
    third = await rig.http.post(url)
    receipts = [r.json() for r in (first, second, third)]
    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    assert receipts[0] == receipts[1] == receipts[2]
    receipt = receipts[0]

    [sale] = rig.events("sale")
    assert rig.sales_made() == 1  # not just deduplicated by the outbox: sold once
    assert sale.id == co["checkout_id"] == receipt["sale_id"] and sale.device_id == "carts"
    data = SaleData.model_validate(sale.data)
    assert data.channel == "cart" and data.member_id == "M0001"
    # One total everywhere: payment QR, sale event, e-receipt, and the engine itself.
    catalog, ruleset = rig.in_aisle._pricing()  # type: ignore[misc]
    engine = price(Basket.model_validate(data.basket), catalog, ruleset,
                   Member.model_validate(data.member), data.priced_at or 0,
                   Store.model_validate(data.store))
    assert co["total"] == data.totals.total == receipt["total"] == engine.total
    assert receipt["total"] == 2590 + 2 * 1490 - 500  # the coupon's 5.00 applied
    assert data.totals.points_earned == receipt["points_earned"] > 0
    # The coupon: redeemed once, reported by the sale, single use at every lane.
    [redeemed] = rig.events("coupon_redeemed")
    assert redeemed.data["code"] == code and redeemed.data["sale_id"] == sale.id
    assert receipt["coupons_redeemed"] == [code]
    assert await rig.ledger.code_used(code)
    c = await rig.in_aisle.ledger.by_code(code)
    assert c is not None and c.redeemed_ms is not None


async def test_an_unknown_checkout_is_refused_and_sells_nothing(rig: Rig) -> None:
    await rig.shop("C2", "SFM:M0002")
    assert (await rig.http.post("/api/cart/C2/checkout/nope/paid")).status_code == 404
    assert rig.events("sale") == [] and rig.sales_made() == 0


async def test_the_cloud_reprices_the_cart_sale_from_the_cached_snapshot(
        signed_rig: Rig) -> None:
    """With the till's signed snapshot cached, the cart sale names that version and the
    cloud's re-pricing path (publication -> store snapshot, channel cart) agrees."""
    rig = signed_rig
    await rig.shop("C3", "SFM:M0001")
    co = (await rig.http.post("/api/cart/C3/checkout")).json()
    receipt = (await rig.http.post(f"/api/cart/C3/checkout/{co['checkout_id']}/paid")).json()
    [sale] = rig.events("sale")
    data = SaleData.model_validate(sale.data)
    publication = bundle_publication()
    assert data.snapshot_version == publication.version and data.channel == "cart"
    again = Repricer().price(publication, store_id="S001", channel="cart",
                             basket=Basket.model_validate(data.basket),
                             catalog=Catalog.model_validate(data.catalog),
                             member=Member.model_validate(data.member),
                             now_ms=data.priced_at or 0, store=Store.model_validate(data.store))
    assert again.total == data.totals.total == receipt["total"] == co["total"]
