"""A store box's lane till for the tests: ``bench.till.lane_store`` (real SQLite ledger
and outbox, the signed snapshot and catalog installed, uvicorn on a free port) with a
real ESC/POS printer simulator and ``PrinterDriver`` over TCP for each lane that has one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from bench.till import LaneStore, lane_store, lanes_of
from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.capabilities import ReceiptPrinter
from edge_agent.drivers.printer import PrinterDriver
from edge_agent.drivers.testing import FakeContext
from firmware_sim.printer.sim import PrinterSim, start_printer_sim
from tests.edge_agent.helpers import wait_until

WIDTH = 42


@dataclass
class LaneRig:
    store: LaneStore
    url: str
    lanes: list[dict[str, str]]
    registry: CollectorRegistry
    workdir: Path
    sims: dict[str, PrinterSim] = field(default_factory=dict)  # by printer device id
    drivers: dict[str, PrinterDriver] = field(default_factory=dict)

    async def printers_online(self) -> None:
        await wait_until(lambda: all(d.health().online for d in self.drivers.values()),
                         within_s=10, what="printers online")

    def client(self, lane: int = 0, token: str | None = None) -> httpx.AsyncClient:
        token = self.lanes[lane]["token"] if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def lane_rig(tmp_path: Path, *, lanes: int = 2, printers: int = 0,
                   till: dict[str, Any] | None = None,
                   lane_printer: dict[int, str] | None = None,
                   transport: httpx.AsyncBaseTransport | None = None
                   ) -> AsyncIterator[LaneRig]:
    """``lanes`` lanes; the first ``printers`` of them print on a simulator each;
    ``lane_printer`` names other printers (lane index -> device id)."""
    spec: list[dict[str, Any]] = list(lanes_of(lanes))
    for i, device_id in (lane_printer or {}).items():
        spec[i] = {**spec[i], "printer": device_id}
    drivers: dict[str, PrinterDriver] = {}
    sims: dict[str, PrinterSim] = {}
    servers = []
    tasks = []
    ctx = FakeContext(store_id="S001")
    for i in range(printers):
        device_id = f"printer-{i + 1}"
        sim, server = await start_printer_sim(port=0, width=WIDTH)
        driver = PrinterDriver(DeviceConfig(device_id, "printer", options={
            "host": "127.0.0.1", "tcp_port": server.sockets[0].getsockname()[1],
            # a lenient status poll: Chromium starting beside it on 2 busy cores must not
            # make a status answer late and the printer "offline" for a moment
            "status_interval_s": 0.2, "status_timeout_s": 3.0}), ctx)
        tasks.append(asyncio.create_task(driver.run(), name=f"test-{device_id}"))
        drivers[device_id], sims[device_id] = driver, sim
        servers.append(server)
        spec[i] = {**spec[i], "printer": device_id}

    def printer(device_id: str) -> ReceiptPrinter | None:
        return drivers.get(device_id)

    registry = CollectorRegistry()
    try:
        await wait_until(lambda: all(d.health().online for d in drivers.values()),
                         within_s=5, what="printers online")
        async with lane_store(tmp_path, spec, registry=registry, printers=printer,
                              till=till, transport=transport) as store:
            assert store.service.url is not None
            yield LaneRig(store, store.service.url, spec, registry, tmp_path, sims, drivers)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            server.close()
        for sim in sims.values():
            await sim.aclose()
        for server in servers:
            await server.wait_closed()
