"""PosPeripherals over real drivers: scanner and customer display on ptys, printer on TCP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.display import DisplayDriver
from edge_agent.drivers.printer import PrinterDriver
from edge_agent.drivers.scanner import ScannerDriver
from edge_agent.drivers.testing import FakeContext
from edge_agent.pos.peripherals import PeripheralUnavailable, PosPeripherals
from edge_agent.pos.receipt import Receipt, ReceiptLine, Totals, money
from firmware_sim.display import start_display_sim
from firmware_sim.scanner import start_scanner_sim
from protocols.linedisplay import two_columns
from tests.edge_agent.helpers import wait_until


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    await wait_until(cond, within_s=timeout)


async def test_scans_reach_iterator_and_callback_and_garbage_is_counted() -> None:
    sim = await start_scanner_sim()
    ctx = FakeContext()
    driver = ScannerDriver(DeviceConfig("SC1", "scanner", options={"port": sim.port.path}), ctx)
    seen: list[str] = []

    async def callback(scan: object) -> None:
        seen.append(getattr(scan, "data", ""))

    driver.on_scan(callback)
    pos = PosPeripherals(scanner=driver)
    task = asyncio.create_task(driver.run(), name="scanner-under-test")
    try:
        await until(lambda: driver.health().online)
        it = pos.scans().__aiter__()
        first = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0.01)
        await sim.scan("4006381333931", "EAN13")
        scan = await asyncio.wait_for(first, 2)
        assert (scan.data, scan.symbology, scan.aim_id) == ("4006381333931", "EAN13", "]E0")
        await sim.garbage(3000)  # noise: rejected lines, not scans
        await sim.port.write(b"\r" + b"7" * 2000 + b"\r")  # a runaway line: overflow
        await sim.scan("{B}https://loyalty.example/m/77", "QR")
        scan = await asyncio.wait_for(it.__anext__(), 2)
        assert scan.symbology == "QR" and scan.data.endswith("/m/77")
        assert seen == ["4006381333931", "{B}https://loyalty.example/m/77"]
        def rejected(reason: str) -> float:
            return ctx.registry.get_sample_value(
                "storefleet_serial_frames_rejected_total", {"device": "SC1", "reason": reason}
            ) or 0.0

        assert rejected("overflow") >= 1 and rejected("not_text") >= 1
        assert driver._decoder.pending <= 512
        await it.aclose()  # type: ignore[attr-defined]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sim.port.close()


async def test_display_shows_items_and_total_and_resends_after_replug() -> None:
    sim, sim_task = await start_display_sim()
    ctx = FakeContext()
    driver = DisplayDriver(DeviceConfig("D1", "display", options={"port": sim.port.path,
                                                                   "idle_text": "Welcome"}), ctx)
    pos = PosPeripherals(display=driver)
    task = asyncio.create_task(driver.run(), name="display-under-test")
    try:
        await sim.wait_for("Welcome")
        assert await pos.show(two_columns("Cola 330ml", "2.50"), two_columns("TOTAL", "4.49"))
        lines = await sim.wait_for("Cola 330ml      2.50")
        assert lines == ("Cola 330ml      2.50", "TOTAL           4.49")
        assert await pos.show("Grüße", "x" * 30)  # non-ASCII and overlong are fitted
        lines = await sim.wait_for("Gr??e")
        assert lines[1] == "x" * 20
        sim.port.unplug()
        await asyncio.gather(task, return_exceptions=True)  # EIO ends the run
        assert not await pos.show("while unplugged", "TOTAL 1.00")
        sim.port.replug()
        task = asyncio.create_task(driver.run(), name="display-under-test-2")
        await sim.wait_for("while unplugged")  # the last text is shown again on reconnect
    finally:
        task.cancel()
        sim_task.cancel()
        await asyncio.gather(task, sim_task, return_exceptions=True)
        sim.port.close()


async def test_missing_peripherals_are_clear_errors() -> None:
    pos = PosPeripherals()
    with pytest.raises(PeripheralUnavailable):
        await pos.open_drawer()
    with pytest.raises(PeripheralUnavailable):
        await pos.print_ticket(["x"])
    with pytest.raises(PeripheralUnavailable):
        async for _ in pos.scans():
            pass
    assert await pos.show("a", "b") is False
    status = pos.status()
    assert status.drawer == "none" and not status.can_print


def test_from_drivers_picks_by_family() -> None:
    ctx = FakeContext()
    p = PrinterDriver(DeviceConfig("P", "printer", options={"host": "h"}), ctx)
    d = DisplayDriver(DeviceConfig("D", "display", options={"port": "/dev/null"}), ctx)
    pos = PosPeripherals.from_drivers([d, p])
    assert pos.printer is p and pos.display is d and pos.scanner is None


def test_receipt_must_add_up_and_money_has_no_floats() -> None:
    with pytest.raises(ValidationError):
        Receipt(receipt_id="R", ts_ms=0, lines=[ReceiptLine(name="a", unit_price=1, amount=1)],
                totals=Totals(subtotal=2, total=2))
    with pytest.raises(ValidationError):
        ReceiptLine(name="a", unit_price=1.5, amount=1)  # type: ignore[arg-type]
    assert money(1234) == "12.34" and money(-5) == "-0.05" and money(500, minor_digits=0) == "500"
