"""A cart-screen rig: the real cart driver on the in-package FakeContext (manual clock),
the real in-aisle runtime (trigger service, cart-screen server on a real port) and an
HTTP client for it. Shared by the HTTP/WebSocket tests and the browser tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from edge_agent.cartscreen import SAMPLE_DATA, InAisle, InAisleSettings
from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.cart import CartDriver
from edge_agent.drivers.testing import FakeContext
from edge_agent.inference.triggers import Location
from firmware_sim.layouts import DEFAULT_LAYOUT
from protocols import encode
from protocols.cart import CartItem, CartSessionMsg
from protocols.clock import ManualClock

MILK, CEREAL, BAGUETTE = "6901234568011", "6901234567892", "2000000000060"
GROCERY = Location(x=12.0, y=10.0, zone="grocery", shelf="A1-1")


class Rig:
    def __init__(self, ctx: FakeContext, carts: CartDriver, in_aisle: InAisle) -> None:
        self.ctx, self.carts, self.in_aisle = ctx, carts, in_aisle
        assert in_aisle.url is not None
        self.url = in_aisle.url
        self.http = httpx.AsyncClient(base_url=self.url, timeout=5)

    async def session(self, cart: str, sid: str, qr: str | None = None) -> None:
        await self.ctx.deliver_local("cart", cart, "session", encode(CartSessionMsg(
            session_id=sid, action="start", member_qr=qr, ts=self.ctx.clock.now_ms())))

    async def item(self, cart: str, sid: str, barcode: str, qty: int = 1) -> None:
        await self.ctx.deliver_local("cart", cart, "item", encode(CartItem(
            ts=self.ctx.clock.now_ms(), session_id=sid, barcode=barcode, qty=qty)))

    async def dwell(self, cart: str, sid: str, member: str | None, seconds: float) -> list[str]:
        codes = []
        for _ in range(int(seconds * 5)):
            got = await self.in_aisle.triggers.handle_scan(cart, session_id=sid, member_id=member,
                                                          readings=[], location=GROCERY)
            codes += [c.code for c in got]
            self.ctx.clock.advance(0.2)  # type: ignore[attr-defined]
        return codes


@contextlib.asynccontextmanager
async def running_rig(tmp_path: Path, **settings: Any) -> AsyncIterator[Rig]:
    """``settings``: InAisleSettings fields over the rig's (the screen confirms payment)."""
    ctx = FakeContext(clock=ManualClock())
    carts = CartDriver(DeviceConfig("carts", "cart"), ctx)
    runner = asyncio.create_task(carts.run(), name="test-carts")
    await asyncio.sleep(0)
    in_aisle = InAisle(InAisleSettings(store_id="S001", data_dir=tmp_path, cartscreen_port=0,
                                       cartscreen_host="127.0.0.1", store_layout=DEFAULT_LAYOUT,
                                       retail_data=SAMPLE_DATA,
                                       **{"payment_confirmation": "screen", **settings}),
                       ctx=ctx, carts=lambda: carts)
    await in_aisle.start()
    rig = Rig(ctx, carts, in_aisle)
    try:
        yield rig
    finally:
        await rig.http.aclose()
        await in_aisle.stop()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
