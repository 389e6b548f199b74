"""What a printed receipt tells a shopper and an auditor, read off the ESC/POS printer
simulator's page: the store from ``[agent.store]`` (name, address, tax id), the date and
time in the store's time zone, till, sale number, cashier, the lines, discounts and
coupons, totals, tenders and change, and for a member's sale the masked member id, the
points earned and the balance after the sale ("pending" offline).

The till is built the way the agent builds it (``AgentConfig`` from a TOML file ->
``PosRuntime``) and prints through the real ``PrinterDriver`` over TCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cloud.promotions.service import store_document
from cloud.promotions.signing import SnapshotSigner
from edge_agent.app import Agent
from edge_agent.config import AgentConfig, StoreSettings, load_config
from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.printer import PrinterDriver
from edge_agent.drivers.testing import FakeContext
from edge_agent.errors import ConfigError
from edge_agent.pos.peripherals import PosPeripherals
from edge_agent.pos.receipt import mask_id
from edge_agent.pos.runtime import PosRuntime
from edge_agent.pos.sales import Tenders
from edge_agent.pos.settings import TillSettings
from firmware_sim.printer.sim import PrinterSim, start_printer_sim
from pricing import Member
from protocols.clock import ManualClock
from protocols.escpos import Page
from tests.edge_agent.helpers import wait_until
from tests.edge_agent.pos.test_sales import CATALOG, STORE, lines, publication

PROMOS: list[dict[str, Any]] = [
    {"kind": "markdown", "id": "milk-10", "name": "Milk 10% off", "percent_bp": 1_000,
     "scope": {"skus": ["milk"]}},
    {"kind": "coupon", "id": "welcome", "name": "Welcome", "code": "CMP-welcome",
     "amount_off": 50},
    {"kind": "points_earn", "id": "earn", "points": 1, "per_minor": 100},
    {"kind": "points_tender", "id": "pay-points", "block_points": 100, "block_minor": 100},
]
STORE_TOML = """
[agent]
store_id = "S001"
data_dir = "{data_dir}"

[till]
trusted_keys = ["{key}"]
utc_offset_min = 0   # pricing's fixed offset; the receipt follows time_zone

[till.store]
name = "Storefleet Market"
address = ["Main St 1", "10115 Berlin"]
tax_id = "DE123456789"
time_zone = "Europe/Berlin"
"""
WIDTH = 42


@dataclass
class Shop:
    pos: PosRuntime
    sim: PrinterSim
    clock: ManualClock
    online: list[bool]

    async def page(self, n: int) -> Page:
        return (await self.sim.wait_pages(n))[n - 1]


@contextlib.asynccontextmanager
async def shop(tmp_path: Path, config: AgentConfig | None = None, *,
               signer: SnapshotSigner | None = None) -> AsyncIterator[Shop]:
    signer = signer or SnapshotSigner.generate()
    if config is None:
        config = AgentConfig(store_id=STORE, data_dir=tmp_path, modules={"till": {
            "trusted_keys": [signer.public_keys()[0]["public_key"]]}})
    sim, server = await start_printer_sim(port=0, width=WIDTH)
    ctx = FakeContext(store_id=STORE)
    driver = PrinterDriver(DeviceConfig("P1", "printer", options={
        "host": "127.0.0.1", "tcp_port": server.sockets[0].getsockname()[1],
        "status_interval_s": 0.05}), ctx)
    task = asyncio.create_task(driver.run(), name="printer-under-test")
    clock = ManualClock()  # 2026-01-01T00:00Z
    online = [True]
    pos = PosRuntime(TillSettings.model_validate(config.modules["till"]),
                     store_id=config.store_id, data_dir=config.data_dir,
                     clock=clock, registry=CollectorRegistry(), sink=ctx,
                     online=lambda: online[0],
                     peripherals=lambda: PosPeripherals(printer=driver))
    await pos.open()
    try:
        assert await pos.promotions.install(store_document(publication(PROMOS), STORE, signer))
        await pos.catalog.install(CATALOG)
        await wait_until(lambda: driver.health().online, within_s=5, what="printer online")
        yield Shop(pos, sim, clock, online)
    finally:
        await pos.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        await sim.aclose()
        await server.wait_closed()


def row(left: str, right: str) -> str:
    """A left/right row as the 42-column receipt lays it out."""
    return f"{left:<{WIDTH - len(right) - 1}} {right}"


async def test_member_receipt_names_store_time_till_cashier_and_points(
        tmp_path: Path) -> None:
    signer = SnapshotSigner.generate()
    toml = tmp_path / "agent.toml"
    toml.write_text(STORE_TOML.format(data_dir=tmp_path / "edge",
                                      key=signer.public_keys()[0]["public_key"]))
    config = load_config(toml)
    member = Member(id="M0004", currency="EUR", points_balance=1_000)
    async with shop(tmp_path, config, signer=signer) as s:
        first = await s.pos.service.sell(lines(("bread", 1)), cashier="Anna")
        s.clock.advance(90.5)
        sale = await s.pos.service.sell(
            lines(("milk", 3), ("coffee", 1)), member=member, coupons=["CMP-welcome"],
            tenders=Tenders(points=200, method="cash", cash_given=2_000), cashier="Anna")
        p = sale.priced
        assert first.printed and sale.printed
        page = await s.page(2)
    text = page.text(width=WIDTH).splitlines()
    # The store, centred, its name bold.
    assert page.lines[0].text == "Storefleet Market" and page.lines[0].bold
    assert page.lines[0].align == "center"
    assert text[1:4] == ["Main St 1".center(WIDTH).rstrip(),
                         "10115 Berlin".center(WIDTH).rstrip(),
                         "VAT ID DE123456789".center(WIDTH).rstrip()]
    # 2026-01-01T00:01:30.500Z in Berlin (CET, UTC+1); the second sale at this till.
    assert text[4:7] == ["2026-01-01 01:01:30 CET", row("Till pos", "Sale 2"),
                         "Cashier Anna"]
    assert text[7] == row(sale.sale_id, "EUR")
    # Lines, then the discount and the coupon by name, totals, tenders and change.
    assert row("Milk 1l", "5.97") in text and "  3 x 1.99" in text
    assert row("Coffee", "8.99") in text
    assert row("Subtotal", "14.96") in text
    assert row("Milk 10% off", "-0.60") in text  # 10 % of 5.97, rounded
    assert row("Coupon Welcome", "-0.50") in text
    assert row("TOTAL", "13.86") in text and p.total == 1_386
    assert row("points", "2.00") in text and row("cash", "20.00") in text
    assert row("Change", f"{(2_000 - p.paid) / 100:.2f}") in text
    # The member, masked; earned and used points; the balance after the sale.
    assert p.points_earned > 0 and p.points_used == 200
    assert text[text.index(row("Member", "***04")) + 1:][:3] == [
        row("Points earned", f"+{p.points_earned}"), row("Points used", "-200"),
        row("Points balance", str(1_000 - 200 + p.points_earned))]
    assert "M0004" not in "\n".join(text)
    assert page.barcodes == (("CODE128", sale.sale_id[-20:]),)


async def test_offline_member_balance_is_pending_and_defaults_name_the_store(
        tmp_path: Path) -> None:
    member = Member(id="M0004", currency="EUR", points_balance=1_000)
    async with shop(tmp_path) as s:
        s.online[0] = False
        sale = await s.pos.service.sell(lines(("coffee", 2)), member=member)
        page = await s.page(1)
    text = page.text(width=WIDTH).splitlines()
    assert sale.offline and sale.priced.points_earned > 0
    # No [agent.store]: the store id names it; time at pos_utc_offset_min (0: UTC).
    assert page.lines[0].text == "Store S001"
    assert text[1:3] == ["2026-01-01 00:00:00 UTC", row("Till pos", "Sale 1")]
    assert not any(line.startswith("Cashier") for line in text)  # none was given
    assert row("Points earned", f"+{sale.priced.points_earned}") in text
    assert row("Points balance", "pending") in text


async def test_balance_not_printed_when_the_till_does_not_know_it(tmp_path: Path) -> None:
    async with shop(tmp_path) as s:
        # A member known by id only (the cloud's ids are uuids): its balance (default 0)
        # was never looked up.
        await s.pos.service.sell(lines(("coffee", 1)), member=Member(
            id="01a2342c-65da-70bb-a60e-5fb0f6213456", currency="EUR"))
        await s.pos.service.sell(lines(("bread", 1)))
        member_page, anonymous = await s.page(1), await s.page(2)
    text = member_page.text(width=WIDTH).splitlines()
    assert row("Member", "****3456") in text  # a 36-character id still fits its row
    assert row("Points earned", "+8") in text  # 899 minor units, 1 point per 100
    assert not any(line.startswith("Points balance") for line in text)
    assert not any(line.startswith(("Member", "Points")) for line in
                   anonymous.text(width=WIDTH).splitlines())


def test_mask_id_never_shows_more_than_half() -> None:
    assert [mask_id(i) for i in ("M0004", "m-1", "abcdefghij", "X")] == [
        "***04", "**1", "****ghij", "*"]



@pytest.mark.parametrize(("store", "field"), [
    ({"time_zone": "Mars/Olympus"}, "store.time_zone"),
    ({"address": "Main St 1"}, "store.address"),
    ({"name": 5}, "store.name"),
    ({"phone": "123"}, "store.phone"),
])
def test_store_settings_are_validated_at_start(
    tmp_path: Path, store: dict[str, Any], field: str
) -> None:
    config = load_config(store_id=STORE, data_dir=tmp_path, modules={"till": {"store": store}})
    with pytest.raises(ConfigError) as err:
        Agent(config, registry=CollectorRegistry())
    assert err.value.field == "till.store" and field in str(err.value)


def test_store_settings_from_toml(tmp_path: Path) -> None:
    toml = tmp_path / "agent.toml"
    toml.write_text(STORE_TOML.format(data_dir=tmp_path, key="k"))
    assert TillSettings.model_validate(load_config(toml).modules["till"]).store == StoreSettings(
        name="Storefleet Market", address=("Main St 1", "10115 Berlin"),
        tax_id="DE123456789", time_zone="Europe/Berlin")
