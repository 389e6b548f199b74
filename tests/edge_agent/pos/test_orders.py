"""The order desk: an online order arrives, its pick ticket prints once on the store's
printer (simulator over TCP), and its status changes go out as order_status events."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.printer import PrinterDriver
from edge_agent.drivers.testing import FakeContext
from edge_agent.pos.ledger import PosLedger
from edge_agent.pos.orders import IllegalTransition, OrderDesk
from edge_agent.pos.peripherals import PosPeripherals
from firmware_sim.printer.sim import start_printer_sim
from protocols import topics
from protocols.clock import ManualClock
from protocols.codec import decode, encode
from protocols.ids import valid_id
from protocols.messages import Event
from protocols.orders import Customer, OrderDispatch, OrderLine, OrderStatusData
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until, watch
from tests.services import Mosquitto

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


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def raw_dispatch(order_id: str, store: str) -> bytes:
    """A dispatch as the wire carries it, whatever its order id (the model refuses bad ones)."""
    doc = json.loads(dispatch("ord-x", store=store))
    doc["order_id"] = order_id
    return json.dumps(doc).encode()


@pytest.mark.parametrize("order_id", ["../../x y", "../escape", "a/b", "a b", ".hidden",
                                      "x" * 65, "ord\n", ""])
async def test_an_order_id_that_is_not_an_id_is_refused_and_nothing_written(
        tmp_path: Path, order_id: str) -> None:
    desk, ctx, ledger = await make_desk(tmp_path / "store", None)
    try:
        assert await desk.handle(raw_dispatch(order_id, STORE)) is None
        sample = ctx.registry.get_sample_value
        assert sample("storefleet_pos_orders_received_total", {"result": "bad_payload"}) == 1
        assert [f for f in files_under(tmp_path) if f.endswith(".txt")] == []
        assert ctx.events == []
    finally:
        await ledger.close()


async def test_a_long_order_id_still_gives_valid_status_event_ids(tmp_path: Path) -> None:
    """A 64-character order id is an id, but ``{order_id}-accepted`` is not: its status
    events are named by a hash, the same for a repeated report."""
    long_id = "o" * 64
    desk, ctx, ledger = await make_desk(tmp_path, None)
    try:
        stored = await desk.handle(dispatch(long_id))
        assert stored is not None and stored.status == "accepted"
        await desk.advance(long_id, "picking")
        ids = [e.id for e in ctx.events]
        assert len(ids) == 2 and all(valid_id(i) for i in ids) and len(set(ids)) == 2
        assert (tmp_path / "tickets" / f"{long_id}.txt").exists()
    finally:
        await ledger.close()


@pytest.mark.mosquitto
async def test_a_path_escaping_order_id_is_refused_through_the_agent(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 13, failure 6: ``order_id = "../../x y"`` wrote the pick ticket outside the
    tickets folder, then its event id failed validation and stopped the agent. Now the
    dispatch is refused at the contract: counted, logged, nothing written, agent runs on."""
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker)
    caplog.set_level(logging.WARNING)
    async with watch(uplink_broker, cfg.store_id) as seen, running_agent(cfg) as agent:
        async with aiomqtt.Client(uplink_broker.host, uplink_broker.port) as cloud:
            await cloud.publish(topics.orders(cfg.store_id),
                                raw_dispatch("../../x y", cfg.store_id), qos=1)
            await wait_until(lambda: metric(agent, "storefleet_pos_orders_received_total",
                                            result="bad_payload") == 1,
                             what="the bad dispatch counted")
            # The agent runs on: the next order is taken and its status reaches the cloud.
            await cloud.publish(topics.orders(cfg.store_id),
                                dispatch("ord-ok", store=cfg.store_id), qos=1)
            status = topics.evt(cfg.store_id, "order_status")
            await wait_until(lambda: seen.on(status), what="the good order's status event")
        assert decode(seen.on(status)[0], Event).id == "ord-ok-accepted"
        assert metric(agent, "storefleet_pos_orders_received_total", result="new") == 1
        assert agent.uplink.connected
    written = files_under(tmp_path)
    # Only the good order's ticket, inside its folder; nothing named after the bad one.
    assert [f for f in written if f.endswith(".txt")] == ["agent/pos/tickets/ord-ok.txt"]
    assert not any("x y" in f for f in written)
    assert any("order dispatch refused" in r.getMessage() and "order_id" in r.getMessage()
               for r in caplog.records)
