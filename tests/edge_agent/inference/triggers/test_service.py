"""The trigger service with a real SQLite ledger: offline codes, idempotency, restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.cart import CartDriver
from edge_agent.drivers.testing import FakeContext
from edge_agent.inference.triggers import (
    BeaconLocator,
    CodeRange,
    CouponLedger,
    StoreMap,
    TriggerEngine,
    TriggerService,
)
from edge_agent.inference.triggers.ledger import IssuedCoupon
from firmware_sim.layouts import DEFAULT_LAYOUT, Layout
from protocols import encode
from protocols.cart import BeaconReading, CartScan
from protocols.clock import ManualClock
from protocols.triggers import CouponIssuedData, TriggerRule, parse_rules

RULES = parse_rules([
    {"id": "grocery", "zone": "grocery", "dwell_ms": 1000, "coupon":
        {"engine_code": "GROCERY5", "title": "5 off"}},
])
RANGE = CodeRange(start=1, end=4, prefix="RTEST0001-", engine_code="GROCERY5",
                  expires_ms=4_102_444_800_000)


def near(layout: Layout, beacon_id: str) -> list[tuple[str, int]]:
    """Readings of a cart standing next to ``beacon_id`` (strongest) and two others."""
    keys = {b.id: b.key for b in layout.beacons}
    return [(keys[beacon_id], -55), (keys["B07"], -80), (keys["B01"], -85)]


async def make(tmp_path: Path, clock: ManualClock, ctx: FakeContext,
               shown: list[tuple[str, IssuedCoupon, TriggerRule]]) -> TriggerService:
    service = TriggerService(
        ctx, ledger=CouponLedger(tmp_path / "triggers.db"), engine=TriggerEngine(RULES),
        locator=BeaconLocator(StoreMap.load(DEFAULT_LAYOUT)),
        on_coupon=lambda cart, c, r: shown.append((cart, c, r)))
    await service.start()
    await service.ledger.add_range(RANGE)
    return service


async def test_a_dwelling_cart_gets_one_coupon_with_a_range_code_and_an_event(
        tmp_path: Path) -> None:
    clock = ManualClock()
    ctx = FakeContext(clock=clock)
    shown: list[tuple[str, IssuedCoupon, TriggerRule]] = []
    layout = Layout.load(DEFAULT_LAYOUT)
    service = await make(tmp_path, clock, ctx, shown)
    try:
        got = []
        for _ in range(15):  # 3 s at 5 Hz next to B03 (grocery)
            got += await service.handle_scan("C1", session_id="s1", member_id=None,
                                             readings=near(layout, "B03"))
            clock.advance(0.2)
        assert [c.code for c in got] == ["RTEST0001-000001"]
        assert service.locations["C1"].zone == "grocery"
        assert [(cart, c.code) for cart, c, _ in shown] == [("C1", "RTEST0001-000001")]
        [event] = ctx.events
        assert event.kind == "coupon_issued" and event.id == got[0].issue_id
        data = CouponIssuedData.model_validate(event.data)
        assert (data.code, data.engine_code, data.zone) == ("RTEST0001-000001", "GROCERY5",
                                                            "grocery")
        assert (await service.ledger.by_code("RTEST0001-000001")).evented  # type: ignore[union-attr]
        # elsewhere in the store (produce) nothing fires
        assert await service.handle_scan("C2", session_id="s2", member_id=None,
                                         readings=near(layout, "B01")) == []
        assert await service.handle_scan("C3", session_id="s3", member_id=None,
                                         readings=[("ibeacon:unknown:1:1", -40)]) == []
        assert ctx.registry.get_sample_value(
            "storefleet_trigger_bad_input_total", {"reason": "unlocatable"}) == 1
    finally:
        await service.aclose()


async def test_codes_are_never_reused_across_restarts_and_issues_are_idempotent(
        tmp_path: Path) -> None:
    clock = ManualClock()
    ctx = FakeContext(clock=clock)
    shown: list[tuple[str, IssuedCoupon, TriggerRule]] = []
    ledger = CouponLedger(tmp_path / "triggers.db")
    await ledger.open()
    await ledger.add_range(RANGE)
    kw = {"engine_code": "GROCERY5", "rule_id": "grocery", "day": 1, "cart_id": "C1",
          "session_id": None, "member_id": None, "issued_ms": clock.now_ms(),
          "expires_ms": clock.now_ms() + 1000}
    first, new = await ledger.issue(issue_id="a", who="s:a", **kw)  # type: ignore[arg-type]
    again, new2 = await ledger.issue(issue_id="a", who="s:a", **kw)  # type: ignore[arg-type]
    assert new and not new2 and again.code == first.code == "RTEST0001-000001"
    await ledger.close()
    # restart: the same range downloaded again keeps its position
    ledger = CouponLedger(tmp_path / "triggers.db")
    await ledger.open()
    await ledger.add_range(RANGE)
    second, _ = await ledger.issue(issue_id="b", who="s:b", **kw)  # type: ignore[arg-type]
    third, _ = await ledger.issue(issue_id="c", who="s:c", **kw)  # type: ignore[arg-type]
    assert [second.code, third.code] == ["RTEST0001-000002", "RTEST0001-000003"]
    assert await ledger.codes_left("GROCERY5", now_ms=clock.now_ms()) == 0
    assert await ledger.redeem(first.code, now_ms=clock.now_ms())
    assert not await ledger.redeem(first.code, now_ms=clock.now_ms())  # single use
    await ledger.close()

    # a service on that ledger: the range is exhausted, so nothing is issued, the miss is
    # counted, and the decision's place under the caps is given back
    service = TriggerService(ctx, ledger=CouponLedger(tmp_path / "triggers.db"),
                             engine=TriggerEngine(RULES), locator=None,
                             on_coupon=lambda cart, c, r: shown.append((cart, c, r)))
    await service.start()
    try:
        from edge_agent.inference.triggers import Location

        loc = Location(x=12, y=10, zone="grocery", shelf=None)
        await service.handle_scan("C1", session_id="s9", member_id=None, readings=[],
                                  location=loc)
        clock.advance(2)
        assert await service.handle_scan("C1", session_id="s9", member_id=None, readings=[],
                                         location=loc) == []
        assert ctx.registry.get_sample_value("storefleet_trigger_issue_failures_total",
                                             {"reason": "no_codes"}) == 1
        await service.ledger.add_range(CodeRange(start=10, end=20, prefix="RMORE0001-",
                                                 engine_code="GROCERY5",
                                                 expires_ms=4_102_444_800_000))
        clock.advance(0.2)
        [c] = await service.handle_scan("C1", session_id="s9", member_id=None, readings=[],
                                        location=loc)
        assert c.code == "RMORE0001-000010"
    finally:
        await service.aclose()


async def test_restart_restores_caps_and_re_emits_a_coupon_whose_event_was_lost(
        tmp_path: Path) -> None:
    clock = ManualClock()
    shown: list[tuple[str, IssuedCoupon, TriggerRule]] = []
    ledger = CouponLedger(tmp_path / "triggers.db")
    await ledger.open()
    await ledger.add_range(RANGE)
    engine = TriggerEngine(RULES)
    # what a crash between the ledger commit and the outbox leaves behind
    issued, _ = await ledger.issue(
        issue_id="cpn-x", engine_code="GROCERY5", rule_id="grocery", who="s:s1",
        day=engine.day_of(clock.now_ms()), cart_id="C1", session_id="s1", member_id=None,
        issued_ms=clock.now_ms(), expires_ms=clock.now_ms() + 3_600_000)
    await ledger.close()

    ctx = FakeContext(clock=clock)
    service = await make(tmp_path, clock, ctx, shown)
    try:
        assert [e.id for e in ctx.events] == ["cpn-x"]  # re-emitted with its own id
        assert (await service.ledger.not_evented()) == []
        from edge_agent.inference.triggers import Location

        loc = Location(x=12, y=10, zone="grocery", shelf=None)
        for _ in range(3):
            await service.handle_scan("C1", session_id="s1", member_id=None, readings=[],
                                      location=loc)
            clock.advance(1)
        assert shown == []  # the same shopper already had it today
        assert issued.code == "RTEST0001-000001"
    finally:
        await service.aclose()


async def test_a_backlog_of_scan_reports_is_judged_in_slices_not_in_one_go(
        tmp_path: Path) -> None:
    """A burst of reports (after a pause of the loop) must not hold the event loop until
    every one is judged: the screens' sockets and the issues wait behind it (0020)."""
    clock = ManualClock()
    ctx = FakeContext(clock=clock)
    layout = Layout.load(DEFAULT_LAYOUT)
    driver = CartDriver(DeviceConfig("carts", "cart", options={"max_carts": 200}), ctx)
    driver_task = asyncio.create_task(driver.run(), name="test-carts")
    await asyncio.sleep(0)
    service = TriggerService(
        ctx, ledger=CouponLedger(tmp_path / "triggers.db"), engine=TriggerEngine(RULES),
        locator=BeaconLocator(StoreMap.load(DEFAULT_LAYOUT)), carts=lambda: driver)
    await service.start()
    run_task = asyncio.create_task(service.run(), name="test-triggers")

    def judged() -> float:
        return ctx.registry.get_sample_value("storefleet_trigger_observations_total",
                                             {"kind": "position"}) or 0

    try:
        await asyncio.sleep(0.05)  # subscribed and waiting
        readings = [BeaconReading(beacon=k, rssi=r) for k, r in near(layout, "B03")]
        for i in range(150):  # one report from each of 150 carts, all at once
            await ctx.deliver_local("cart", f"C{i:03d}", "scan", encode(CartScan(
                ts=clock.now_ms(), session_id=f"s{i}", readings=readings)))
        await asyncio.sleep(0)  # the loop runs the service until it lets others run
        assert 0 < judged() < 150
        await asyncio.sleep(0.2)  # ~10 ms of work
        assert judged() == 150 and len(service.locations) == 150
    finally:
        for task in (run_task, driver_task):
            task.cancel()
        await asyncio.gather(run_task, driver_task, return_exceptions=True)
        await service.aclose()
