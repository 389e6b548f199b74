"""Carts issue coupons only from the ranges HQ allocated to the store, from the moment the
till has them (issue 11): the sample bundle's ranges only while the store has never had
an allocation. HQ allocates through the real cloud app (SQLite); the till's
``RangeCache`` downloads it with its device token, as the agent's POS does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.main import create_app
from edge_agent.cartscreen import SAMPLE_DATA, InAisle, InAisleSettings
from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.cart import CartDriver
from edge_agent.drivers.testing import FakeContext
from edge_agent.inference.triggers import Location
from edge_agent.pos.cache import CacheMetrics, CloudApi, RangeCache
from firmware_sim.layouts import DEFAULT_LAYOUT
from protocols.clock import ManualClock
from tests.cloud.conftest import ADMIN, DEVICE, api_client, auth, make_settings

GROCERY = Location(x=12.0, y=10.0, zone="grocery", shelf="A1-1")


async def _coupon(in_aisle: InAisle, ctx: FakeContext, cart: str) -> str:
    """A new shopper dwells 3 s in the grocery zone: the welcome coupon's code."""
    codes = []
    for _ in range(15):
        got = await in_aisle.triggers.handle_scan(cart, session_id=f"sess-{cart}",
                                                  member_id=None, readings=[], location=GROCERY)
        codes += [c.code for c in got]
        ctx.clock.advance(0.2)  # type: ignore[attr-defined]
    [code] = codes
    return code


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, CloudApi]]:
    """HQ's client (admin token) and the till's (device token) on one real cloud app."""
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'cloud.db'}"),
                     registry=CollectorRegistry())
    async with api_client(app) as hq:
        till_api = CloudApi("http://cloud", token=DEVICE,
                            transport=httpx.ASGITransport(app=app))
        try:
            yield hq, till_api
        finally:
            await till_api.aclose()


async def test_the_first_coupon_after_the_allocation_comes_from_it(
        tmp_path: Path, cloud: tuple[httpx.AsyncClient, CloudApi]) -> None:
    hq, till_api = cloud
    ctx = FakeContext(store_id="S001", clock=ManualClock(), registry=CollectorRegistry())
    carts = CartDriver(DeviceConfig("carts", "cart"), ctx)
    till = RangeCache(tmp_path / "pos" / "ranges.json", store_id="S001",
                      metrics=CacheMetrics(ctx.registry))
    in_aisle = InAisle(InAisleSettings(store_id="S001", data_dir=tmp_path,
                                       store_layout=DEFAULT_LAYOUT, retail_data=SAMPLE_DATA),
                       ctx=ctx, carts=lambda: carts, pos_ranges=lambda: list(till.ranges))
    await in_aisle.start()
    try:
        # No cloud range yet (a store without HQ, or before the first allocation): the
        # bundle's ranges keep the demo working.
        assert (await _coupon(in_aisle, ctx, "C1")).startswith("RDEMOGRC5-")

        allocated = await hq.post("/api/v1/stores/S001/coupon-ranges", headers=auth(ADMIN),
                                     json={"engine_code": "GROCERY5", "count": 50})
        assert allocated.status_code in (200, 201), allocated.text
        prefix = allocated.json()["prefix"]
        assert await till.refresh(till_api)  # the till now holds the store's own range

        code = await _coupon(in_aisle, ctx, "C2")  # the very next one, no wait
        assert code.startswith(prefix) and not code.startswith("RDEMO")
        assert till.lookup(code, now_ms=ctx.clock.now_ms()) is not None  # the till knows it
        # From then on never a bundle code, even for a coupon HQ allocated nothing for.
        assert await in_aisle.ledger.codes_left("SNACK3", now_ms=ctx.clock.now_ms()) == 0
        assert (await _coupon(in_aisle, ctx, "C3")).startswith(prefix)
    finally:
        await in_aisle.stop()
