"""Printer driver (and its cash drawer) against the ESC/POS printer simulator over
real TCP sockets and a real pty; python-escpos renders every job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.printer import PrinterDriver, PrinterUnavailable
from edge_agent.drivers.supervisor import DriverSupervisor
from edge_agent.drivers.testing import FakeContext
from edge_agent.pos.peripherals import PeripheralUnavailable, PosPeripherals
from edge_agent.pos.receipt import Receipt, ReceiptLine, Tender, Totals
from firmware_sim.printer.sim import PrinterSim, start_printer_sim, start_serial_printer_sim
from protocols.clock import ManualClock
from tests.edge_agent.helpers import wait_until

RECEIPT = Receipt(
    receipt_id="R-0001", ts_ms=1_767_225_600_000, header=["STOREFLEET", "Main St 1"],
    lines=[ReceiptLine(name="Cola 330ml", qty=2, unit_price=125, amount=250),
           ReceiptLine(name="Bread", unit_price=199, amount=199)],
    totals=Totals(subtotal=449, tax=40, total=449), tenders=[Tender(method="cash", amount=500)],
    change=51, qr="https://r.example/R-0001", barcode="R-0001", footer=["Thank you"])


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    await wait_until(cond, within_s=timeout)


@contextlib.asynccontextmanager
async def tcp_printer(tmp_path: Path, ctx: FakeContext | None = None
                      ) -> AsyncIterator[tuple[PrinterSim, FakeContext, PrinterDriver]]:
    sim, server = await start_printer_sim(port=0, out_dir=tmp_path / "receipts")
    port = server.sockets[0].getsockname()[1]
    ctx = ctx or FakeContext()
    driver = PrinterDriver(DeviceConfig("P1", "printer", options={
        "host": "127.0.0.1", "tcp_port": port, "status_interval_s": 0.02}), ctx)
    task = asyncio.create_task(driver.run(), name="printer-under-test")
    try:
        await until(lambda: driver.health().online)
        yield sim, ctx, driver
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        await sim.aclose()
        await server.wait_closed()


async def test_receipt_prints_with_barcode_qr_and_is_written_to_a_file(tmp_path: Path) -> None:
    async with tcp_printer(tmp_path) as (sim, ctx, driver):
        pos = PosPeripherals(printer=driver)
        await pos.print_receipt(RECEIPT)
        (page,) = await sim.wait_pages(1)
        texts = [line.text for line in page.lines]
        assert texts[0] == "STOREFLEET" and page.lines[0].bold and page.lines[0].align == "center"
        total = next(line for line in page.lines if line.text.startswith("TOTAL"))
        assert total.bold and total.text.endswith("4.49")
        assert page.barcodes == (("CODE128", "R-0001"),)
        assert page.qr_codes == ("https://r.example/R-0001",)
        written = (tmp_path / "receipts" / "receipt-0001.txt").read_text()
        assert "Cola 330ml" in written and "  2 x 1.25" in written
        assert ctx.registry.get_sample_value(
            "storefleet_printer_jobs_total", {"device": "P1", "result": "printed"}) == 1


async def test_paper_out_is_one_alarm_per_transition_and_refuses_jobs(tmp_path: Path) -> None:
    async with tcp_printer(tmp_path) as (sim, ctx, driver):
        pos = PosPeripherals(printer=driver)
        sim.set_state(paper="out")
        await until(lambda: "paper_out" in driver.health().alarms)
        await asyncio.sleep(0.1)  # several more polls: still one event
        alarms = [e for e in ctx.events if e.kind == "device_alarm"]
        assert [(e.data["alarm"], e.data["active"]) for e in alarms] == [("paper_out", True)]
        assert not pos.status().can_print
        with pytest.raises(PeripheralUnavailable) as info:
            await pos.print_ticket(["order 42"])
        assert "paper_out" in info.value.reason
        sim.set_state(paper="ok", cover_open=True)
        await until(lambda: driver.health().alarms == ("cover_open",))
        sim.set_state(cover_open=False)
        await until(lambda: driver.health().alarms == ())
        changes = [(e.data["alarm"], e.data["active"]) for e in ctx.events
                   if e.kind == "device_alarm"]
        assert changes == [("paper_out", True), ("cover_open", True), ("paper_out", False),
                           ("cover_open", False)]
        await pos.print_ticket(["order 42"])
        assert (await sim.wait_pages(1))[0].lines[0].text == "order 42"


async def test_drawer_kick_status_and_left_open_alarm(tmp_path: Path) -> None:
    clock = ManualClock()
    async with tcp_printer(tmp_path, FakeContext(clock=clock)) as (sim, ctx, driver):
        pos = PosPeripherals(printer=driver)
        assert pos.status().drawer == "closed"
        await pos.open_drawer()
        await until(lambda: pos.status().drawer == "open")
        assert sim.kicks[0].pin == 2
        assert [e.data["event"] for e in ctx.events if e.kind == "device_event"] == [
            "drawer_opened"]
        clock.advance(61)
        assert "drawer_open_too_long" in driver.health().alarms
        sim.close_drawer()
        await until(lambda: pos.status().drawer == "closed")
        await until(lambda: "drawer_open_too_long" not in driver.health().alarms)
        assert [e.data["event"] for e in ctx.events if e.kind == "device_event"] == [
            "drawer_opened", "drawer_closed"]


async def test_tcp_reset_is_survived_under_the_supervisor(tmp_path: Path) -> None:
    sim, server = await start_printer_sim(port=0)
    port = server.sockets[0].getsockname()[1]
    ctx = FakeContext()
    sup = DriverSupervisor(ctx, backoff_min_s=0.02, backoff_max_s=0.1)
    try:
        sup.configure([DeviceConfig("P1", "printer", options={
            "host": "127.0.0.1", "tcp_port": port, "status_interval_s": 0.02})])
        await until(lambda: sup.health()["P1"]["online"])
        sim.reset_connections()
        await until(lambda: sup.health()["P1"]["restarts"] >= 1)
        await until(lambda: sup.health()["P1"]["online"])
        await sup.command("P1", "print_text", {"lines": ["after reset"]})
        assert (await sim.wait_pages(1))[0].lines[0].text == "after reset"
        assert sim.connections >= 2
    finally:
        await sup.aclose()
        server.close()
        await sim.aclose()
        await server.wait_closed()


async def test_serial_printer_on_a_pty() -> None:
    sim, pty, sim_task = await start_serial_printer_sim()
    ctx = FakeContext()
    driver = PrinterDriver(DeviceConfig("P2", "printer", options={
        "port": pty.path, "status_interval_s": 0.02, "drawer": False}), ctx)
    task = asyncio.create_task(driver.run(), name="serial-printer-under-test")
    try:
        await until(lambda: driver.health().online)
        await PosPeripherals(printer=driver).print_ticket(["PICK LIST", "1 x Cola"])
        (page,) = await sim.wait_pages(1)
        assert [x.text for x in page.lines] == ["PICK LIST", "1 x Cola"]
        with pytest.raises(PeripheralUnavailable):
            await PosPeripherals(printer=driver).open_drawer()
        pty.unplug()
        with pytest.raises(Exception):  # noqa: B017 - LinkClosed, surfaced as the task's error
            await asyncio.wait_for(task, 2)
        assert not driver.health().online
        with pytest.raises(PrinterUnavailable):
            await driver.print_bytes(b"x")
    finally:
        task.cancel()
        sim_task.cancel()
        await asyncio.gather(task, sim_task, return_exceptions=True)
        pty.close()
