"""A shopper's cart as a reviewer would want to see it: a member signed in, a basket,
a wallet holding two codes of the same promotion (one issued yesterday, one today) and a
member-only coupon. Built through the real paths (cart driver, trigger service, ledger),
on the rig's manual clock. Shared by the wallet and the layout tests."""

from __future__ import annotations

from edge_agent.inference.triggers import Location
from tests.edge_agent.cartscreen.rig import BAGUETTE, CEREAL, MILK, Rig

DAY_S, HOUR_S = 86_400, 3_600
DAIRY_SHELF = Location(x=26.0, y=17.0, zone="dairy", shelf="D-1")


async def two_grocery_coupons(rig: Rig, cart: str = "C1") -> tuple[str, str]:
    """Member M0001 gets "5 off your basket" at 23:00 and, as the grocery rule gives one a
    day (``per_member_per_day``), again at 00:30 in a new cart session; the first is still
    valid (4 h). The cart is left in the second session. Returns (first, second) code."""
    local_ms = rig.ctx.clock.now_ms() + rig.in_aisle.engine.utc_offset_min * 60_000
    rig.ctx.clock.advance(DAY_S - HOUR_S - local_ms // 1000 % DAY_S)  # type: ignore[attr-defined]
    await rig.session(cart, "sess-day1", qr="SFM:M0001")
    [first] = await rig.dwell(cart, "sess-day1", "M0001", 3)
    rig.ctx.clock.advance(1.5 * HOUR_S)  # type: ignore[attr-defined]
    await rig.session(cart, "sess-day2", qr="SFM:M0001")
    [second] = await rig.dwell(cart, "sess-day2", "M0001", 3)
    return first, second


async def dairy_coupon(rig: Rig, cart: str, sid: str, member: str) -> list[str]:
    """Linger 4 s at the dairy shelf (the member-only "10% off dairy" rule: 3 s)."""
    codes = []
    for _ in range(20):  # 5 Hz, as the carts report
        got = await rig.in_aisle.triggers.handle_scan(cart, session_id=sid, member_id=member,
                                                      readings=[], location=DAIRY_SHELF)
        codes += [c.code for c in got]
        rig.ctx.clock.advance(0.2)  # type: ignore[attr-defined]
    return codes


async def full_cart(rig: Rig, cart: str = "C1") -> tuple[str, str]:
    """Two grocery codes, a dairy code, and cereal, two milks and a baguette scanned."""
    codes = await two_grocery_coupons(rig, cart)
    assert len(await dairy_coupon(rig, cart, "sess-day2", "M0001")) == 1
    await rig.item(cart, "sess-day2", CEREAL)
    await rig.item(cart, "sess-day2", MILK, 2)
    await rig.item(cart, "sess-day2", BAGUETTE)
    return codes
