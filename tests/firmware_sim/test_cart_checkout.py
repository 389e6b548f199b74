"""Simulated carts pay on the real cart screen at the end of a trip, so the store records
real cart sales: the tablet's calls (``firmware_sim.cart.tablet``) against the agent's
cart-screen server, and the whole path (cart simulator on a real bus -> agent -> ``sale``
on the uplink)."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cloud.loyalty.sale import SaleData
from edge_agent.app import Agent
from edge_agent.cartscreen import SAMPLE_DATA
from edge_agent.cartscreen.checkout import cart_till
from edge_agent.cartscreen.runtime import InAisle
from edge_agent.modules.in_aisle import InAisleModule
from edge_agent.pos.ledger import PosLedger
from edge_agent.pos.sales import PosMetrics
from firmware_sim.cart import CartSimulator
from firmware_sim.cart.tablet import ScreenCallError, ScreenTablet, Trip, end_trip
from firmware_sim.layouts import DEFAULT_LAYOUT, Layout
from firmware_sim.store import StoreSimulator
from pricing import Basket, Catalog, Line, Member, PromotionSnapshot, Store, compile, price
from protocols import decode, topics
from protocols.messages import Event
from tests.edge_agent.cartscreen.rig import BAGUETTE, CEREAL, MILK, Rig, running_rig
from tests.edge_agent.helpers import make_config, running_agent, wait_until, watch
from tests.services import Mosquitto


def aisle(agent: Agent) -> InAisle:
    """The agent's in-aisle runtime (its module ``in_aisle``)."""
    return agent.get(InAisleModule).in_aisle

BUNDLE = json.loads(SAMPLE_DATA.read_text())
CATALOG = Catalog.model_validate(BUNDLE["catalog"])
RULESET = compile(PromotionSnapshot.model_validate(BUNDLE["promotions"]))
SCANNED = {CEREAL: 1, MILK: 2, BAGUETTE: 1}


def subtotal(basket: dict[str, int]) -> int:
    return sum(CATALOG.items[sku].price * qty for sku, qty in basket.items())


def basket_of(data: SaleData) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for line in Basket.model_validate(data.basket).lines:
        counts[line.sku] += line.qty
    return dict(counts)


def engine_total(data: SaleData, scanned: dict[str, int], engine_codes: tuple[str, ...]) -> int:
    """What the pricing engine makes of the scanned basket with the coupons applied, on
    its own (the bundle's catalog and promotions), for the sale's member and time."""
    basket = Basket(id="expected", currency=CATALOG.currency, coupons=engine_codes,
                    lines=tuple(Line(line_id=f"l-{s}", sku=s, qty=q)
                                for s, q in sorted(scanned.items())))
    member = Member.model_validate(data.member) if data.member else None
    return price(basket, CATALOG, RULESET, member, data.priced_at or 0,
                 Store.model_validate(data.store)).total


def engine_code(code: str) -> str:
    prefix = next(r for r in BUNDLE["coupon_ranges"] if code.startswith(r["prefix"]))
    return str(prefix["engine_code"])


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """The real cart screen (screen confirms payment) recording checkouts as till sales."""
    async with running_rig(tmp_path) as r:
        ledger = PosLedger(tmp_path / "pos.db")
        await ledger.open()
        r.in_aisle.use_till(cart_till(r.in_aisle, ledger=ledger, sink=r.ctx, clock=r.ctx.clock,
                                      metrics=PosMetrics(r.ctx.registry), online=lambda: True))
        try:
            yield r
        finally:
            await ledger.close()


async def shop(rig: Rig, cart: str, sid: str, member: str) -> list[str]:
    """A member scans ``SCANNED`` and lingers in the grocery aisle: the coupons issued."""
    await rig.session(cart, sid, qr=f"SFM:{member}")
    for sku, qty in SCANNED.items():
        await rig.item(cart, sid, sku, qty)
    return await rig.dwell(cart, sid, member, 3)


def events(rig: Rig, kind: str) -> list[Any]:
    return [e for e in rig.ctx.events if e.kind == kind]


async def test_the_tablet_applies_a_wallet_coupon_and_pays_a_sale_of_what_was_scanned(
        rig: Rig) -> None:
    [code] = await shop(rig, "C1", "sess-1", "M0001")
    async with ScreenTablet(rig.url, "C1") as tablet:
        trip = await end_trip(tablet, Trip("sess-1", dict(SCANNED)), rng=random.Random(1),
                              coupon_share=1.0, pay=True)
    assert trip.settled and trip.coupon == code and trip.confirmation == "screen"
    assert trip.receipt is not None and trip.receipt["coupons_redeemed"] == [code]
    [sale] = events(rig, "sale")
    data = SaleData.model_validate(sale.data)
    assert sale.id == trip.checkout_id == trip.receipt["sale_id"]
    assert data.channel == "cart" and data.member_id == "M0001"
    assert basket_of(data) == SCANNED
    assert data.totals.subtotal == subtotal(SCANNED)
    assert data.totals.total == trip.total == trip.receipt["total"] == engine_total(
        data, SCANNED, ("GROCERY5",)) == engine_total(data, SCANNED, ()) - 500  # 5.00 off
    [redeemed] = events(rig, "coupon_redeemed")
    assert redeemed.data["code"] == code and redeemed.data["sale_id"] == sale.id


async def test_a_coupon_in_use_on_another_cart_is_refused_and_the_basket_paid_without_it(
        rig: Rig) -> None:
    [code] = await shop(rig, "C1", "sess-1", "M0001")
    assert (await rig.http.post(f"/api/cart/C1/coupons/{code}/apply")).status_code == 200
    await rig.session("C2", "sess-2", qr="SFM:M0001")  # the member's second cart
    await rig.item("C2", "sess-2", CEREAL)
    async with ScreenTablet(rig.url, "C2") as tablet:
        trip = await end_trip(tablet, Trip("sess-2", {CEREAL: 1}), rng=random.Random(1),
                              coupon_share=1.0, pay=True)
    assert trip.coupon is None and trip.coupon_refused is not None
    assert "another cart" in trip.coupon_refused
    assert trip.receipt is not None and trip.receipt["coupons_redeemed"] == []
    [sale] = events(rig, "sale")
    assert SaleData.model_validate(sale.data).totals.total == subtotal({CEREAL: 1}) == trip.total
    assert events(rig, "coupon_redeemed") == []


async def test_with_a_payment_provider_the_tablet_shows_the_qr_and_does_not_confirm(
        tmp_path: Path) -> None:
    async with running_rig(tmp_path, payment_confirmation="provider") as rig:
        await rig.session("C1", "sess-1")
        await rig.item("C1", "sess-1", MILK)
        async with ScreenTablet(rig.url, "C1") as tablet:
            trip = await end_trip(tablet, Trip("sess-1", {MILK: 1}), rng=random.Random(1),
                                  coupon_share=1.0, pay=True)
        assert trip.confirmation == "provider" and trip.checkout_id is not None
        assert trip.total == subtotal({MILK: 1}) and trip.receipt is None
        assert rig.in_aisle.backend.view("C1").checkout is not None  # the QR stands
        assert events(rig, "sale") == [] and events(rig, "coupon_redeemed") == []


async def test_a_screen_that_cannot_be_reached_is_a_typed_error() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with ScreenTablet(f"http://127.0.0.1:{port}", "C1", timeout_s=2) as tablet:
        with pytest.raises(ScreenCallError) as got:
            await end_trip(tablet, Trip("sess-1", {MILK: 1}), rng=random.Random(1),
                           coupon_share=1.0, pay=True)
    assert got.value.step == "state" and got.value.status is None


# ---- the whole path: carts on a real bus, the agent, the uplink ----------------------------

SEED = 3  # a shopper (fixed seed) whose first trip lingers in the grocery aisles


@pytest.mark.mosquitto
async def test_simulated_carts_trips_end_in_recorded_cart_sales(
        mosquitto_factory: Callable[[], Mosquitto], tmp_path: Path) -> None:
    """A cart walks the store, scans, and pays on the agent's cart screen: every trip it
    paid is a ``sale`` (channel cart) on the uplink whose basket is what the cart scanned
    and whose total is that basket priced with the coupon it applied, and the coupon is
    redeemed by that sale. A cart whose screen cannot be reached counts its failed
    checkouts and keeps shopping."""
    uplink, local = mosquitto_factory(), mosquitto_factory()
    config = make_config(tmp_path, uplink=uplink, local=local,
                         devices=({"id": "carts", "family": "cart"},),
                         modules={"in_aisle": {
                             "cartscreen_port": 0, "cartscreen_host": "127.0.0.1",
                             "store_layout": DEFAULT_LAYOUT, "retail_data": SAMPLE_DATA,
                             "payment_confirmation": "screen"}},
                         health_interval_s=0.5)
    layout = Layout.load(DEFAULT_LAYOUT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    stop = asyncio.Event()
    store = config.store_id
    async with running_agent(config) as agent, watch(uplink, store) as up:
        assert aisle(agent) is not None and aisle(agent).url is not None
        cart = CartSimulator("C1", local.url, layout, seed=SEED, member_share=1.0,
                             coupon_share=1.0, items_per_session=(2, 3), dwell_s=2.5,
                             speed_mps=3.0, screen_url=aisle(agent).url)
        lost = CartSimulator("C2", local.url, layout, seed=SEED + 1, items_per_session=(1, 1),
                             dwell_s=0.5, speed_mps=4.0, screen_url=dead)
        tasks = [asyncio.create_task(c.run(stop), name=f"test-{c.cart_id}")
                 for c in (cart, lost)]
        try:
            await wait_until(lambda: (any(t.receipt and t.coupon for t in cart.trips)
                                      and lost.checkout_failures >= 2)
                             or any(t.done() for t in tasks),
                             within_s=120, what="a paid trip with a coupon, failed checkouts")
            stop.set()
            # a cart finishes a payment in progress before it stops (PAYMENT_GRACE_S); a
            # starved CI box needs the margin
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        paid = [t for t in cart.trips if t.receipt is not None]
        await wait_until(lambda: len(up.on(topics.evt(store, "sale"))) >= len(paid),
                         within_s=10, what="the sales on the uplink")
    sales = {e.id: e for e in (decode(raw, Event) for raw in up.on(topics.evt(store, "sale")))}
    redeemed = [decode(raw, Event) for raw in up.on(topics.evt(store, "coupon_redeemed"))]

    assert paid and cart.paid == len(paid) and cart.checkout_failures == 0
    assert set(sales) == {t.checkout_id for t in paid}  # no sale but the paid trips
    for trip in paid:
        assert trip.receipt is not None and trip.settled and trip.checkout_id is not None
        sale = sales[trip.checkout_id]
        data = SaleData.model_validate(sale.data)
        assert data.channel == "cart" and sale.device_id == "carts"
        assert basket_of(data) == trip.scanned
        assert data.totals.subtotal == subtotal(trip.scanned)
        codes = tuple(trip.receipt["coupons_redeemed"])
        assert codes == ((trip.coupon,) if trip.coupon else ())
        assert data.totals.total == trip.total == engine_total(
            data, trip.scanned, tuple(engine_code(c) for c in codes))
        assert sorted(e.data["code"] for e in redeemed
                      if e.data["sale_id"] == trip.checkout_id) == sorted(codes)
    with_coupon = [t for t in paid if t.coupon]
    assert with_coupon and all(sales[str(t.checkout_id)].data["totals"]["discount"] > 0
                               for t in with_coupon)
    # the cart that could not reach its screen kept shopping: session after session
    assert len(lost.sessions) >= lost.checkout_failures >= 2
    assert lost.trips == [] and lost.paid == 0


@pytest.mark.mosquitto
async def test_the_store_simulator_sends_its_carts_to_the_cart_screen(
        mosquitto: Mosquitto) -> None:
    """``StoreSimulator(cart_screen_url=...)``, what the demo passes (the agent's
    ``InAisle.url``), is where every cart of the store pays."""
    url = "http://127.0.0.1:8090"
    sim = StoreSimulator(bus_url=mosquitto.url, devices=1, rate=20, max_events=5,
                         layout=DEFAULT_LAYOUT, carts=2, other_families=False,
                         cart_screen_url=url)
    await asyncio.wait_for(sim.run(asyncio.Event()), timeout=30)
    assert [c.screen_url for c in sim.cart_sims] == [url, url]
    assert all(c.pay for c in sim.cart_sims)
