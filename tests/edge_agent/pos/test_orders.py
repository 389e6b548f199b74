"""The order desk: an online order arrives, its pick ticket prints once on the store's
printer (simulator over TCP), and its status changes go out as order_status events."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.printer import PrinterDriver
from edge_agent.drivers.testing import FakeContext
from edge_agent.pos.ledger import PosLedger
from edge_agent.pos.orders import IllegalTransition, OrderDesk
from edge_agent.pos.peripherals import PosPeripherals
from firmware_sim.printer.sim import start_printer_sim
from protocols.clock import ManualClock
from protocols.codec import encode
from protocols.orders import Customer, OrderDispatch, OrderLine, OrderStatusData

STORE = "S001"


def dispatch(order_id: str = "ord-1", *, fulfilment: str = "pickup",
             store: str = STORE) -> bytes:
    return encode(OrderDispatch(
        order_id=order_id, store_id=store, fulfilment=fulfilment,  # type: ignore[arg-type]
        lines=[OrderLine(sku="milk", qty=2, name="Milk 1l"), OrderLine(sku="bread", qty=1)],
        customer=Customer(name="Ada", phone="+49 30 1234", address="Main St 1"),
        note="ring twice", created_ms=1, ts=2))


async def make_desk(tmp_path: Path, printer: PrinterDriver | None
                    ) -> tuple[OrderDesk, FakeContext, PosLedger]:
    ledger = PosLedger(tmp_path / "pos.db")
    await ledger.open()
    ctx = FakeContext(store_id=STORE, clock=ManualClock())
    desk = OrderDesk(store_id=STORE, ledger=ledger, sink=ctx, clock=ctx.clock,
                     registry=ctx.registry, tickets_dir=tmp_path / "tickets",
                     peripherals=lambda: PosPeripherals(printer=printer) if printer else None)
    return desk, ctx, ledger


async def test_order_prints_once_and_reports_its_status(tmp_path: Path) -> None:
    sim, server = await start_printer_sim(port=0)
    driver = PrinterDriver(DeviceConfig("P1", "printer", options={
        "host": "127.0.0.1", "tcp_port": server.sockets[0].getsockname()[1],
        "status_interval_s": 0.05}), FakeContext())
    task = asyncio.create_task(driver.run(), name="printer-under-test")
    desk, ctx, ledger = await make_desk(tmp_path, driver)
    try:
        for _ in range(200):
            if driver.health().online:
                break
            await asyncio.sleep(0.01)
        stored = await desk.handle(dispatch())
        assert stored is not None and stored.status == "accepted" and stored.printed
        pages = await sim.wait_pages(1)
        text = pages[0].text()
        assert "ord-1" in text and "2 x milk  Milk 1l" in text and "ring twice" in text
        await desk.handle(dispatch())  # redelivered: recognised, not printed again
        await asyncio.sleep(0.2)
        assert len(sim.pages) == 1
        for status in ("picking", "ready", "handed_over"):
            await desk.advance("ord-1", status)
        with pytest.raises(IllegalTransition):
            await desk.advance("ord-1", "picking")
        statuses = [(e.id, OrderStatusData.model_validate(e.data).status) for e in ctx.events]
        assert statuses == [("ord-1-accepted", "accepted"), ("ord-1-picking", "picking"),
                            ("ord-1-ready", "ready"), ("ord-1-handed_over", "handed_over")]
        assert {e.kind for e in ctx.events} == {"order_status"}
        sample = ctx.registry.get_sample_value
        assert sample("storefleet_pos_orders_received_total", {"result": "new"}) == 1
        assert sample("storefleet_pos_orders_received_total", {"result": "duplicate"}) == 1
        assert sample("storefleet_pos_order_tickets_total", {"where": "printer"}) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        await sim.aclose()
        await ledger.close()


async def test_without_printer_the_ticket_is_stored_and_bad_input_counted(
        tmp_path: Path) -> None:
    desk, ctx, ledger = await make_desk(tmp_path, None)
    try:
        await desk.handle(dispatch("ord-2", fulfilment="delivery"))
        ticket = (tmp_path / "tickets" / "ord-2.txt").read_text()
        assert "DELIVERY" in ticket and "Deliver to: Main St 1" in ticket
        await desk.advance("ord-2", "picking")
        await desk.advance("ord-2", "ready")
        with pytest.raises(IllegalTransition):
            await desk.advance("ord-2", "handed_over")  # a delivery goes out, not handed over
        await desk.advance("ord-2", "out_for_delivery")
        assert await desk.handle(b"{not json") is None
        assert await desk.handle(dispatch("ord-3", store="S999")) is None
        assert await desk.handle(b'{"v": 1, "order_id": "x"}') is None
        sample = ctx.registry.get_sample_value
        assert sample("storefleet_pos_orders_received_total", {"result": "bad_payload"}) == 2
        assert sample("storefleet_pos_orders_received_total", {"result": "wrong_store"}) == 1
        assert [e.id for e in ctx.events] == ["ord-2-accepted", "ord-2-picking", "ord-2-ready",
                                             "ord-2-out_for_delivery"]
    finally:
        await ledger.close()
