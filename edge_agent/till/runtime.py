"""``LaneService``: the lanes' till and its HTTP server, as the till module runs them.

    service = LaneService(settings.lanes, pos=till.pos, sink=kernel.sink, clock=clock,
                          online=kernel.online,
                          printers=printer_of(kernel.drivers), registry=registry)
    await service.start()          # listening; service.url
    ...
    await service.stop()

uvicorn runs as a task of the agent's loop (``EmbeddedServer``, as the cart screens):
no thread, no second process, and the sales it records go through the same ledger and
outbox as every other sale of the box.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from edge_agent.cartscreen.server import CartScreenServer
from edge_agent.drivers.capabilities import ReceiptPrinter
from edge_agent.drivers.supervisor import DriverSupervisor
from edge_agent.pos.runtime import PosRuntime
from edge_agent.pos.sales import EventSink
from edge_agent.till.members import CloudMembers, MemberDirectory, StoreMembers
from edge_agent.till.service import LaneTills
from edge_agent.till.settings import LanesSettings
from protocols.clock import Clock

logger = logging.getLogger(__name__)


def printer_of(drivers: DriverSupervisor) -> Callable[[str], ReceiptPrinter | None]:
    """Look a lane's printer up among the agent's running drivers at each sale (a
    printer reconfigured or restarted is found again)."""
    def find(device_id: str) -> ReceiptPrinter | None:
        driver = drivers.driver(device_id)
        return driver if isinstance(driver, ReceiptPrinter) else None

    return find


class LaneService:
    def __init__(self, settings: LanesSettings, *, pos: PosRuntime, sink: EventSink,
                 clock: Clock, online: Callable[[], bool],
                 printers: Callable[[str], ReceiptPrinter | None],
                 registry: CollectorRegistry, members: object | None = None) -> None:
        """``printers``: the running receipt printer of a device id (``printer_of``);
        ``members``: the box's members module, if it runs (else the cloud is asked)."""
        self.settings = settings
        directory: MemberDirectory = (
            StoreMembers(members, currency=pos.settings.currency) if members is not None
            else CloudMembers(api=pos.api, currency=pos.settings.currency, online=online))
        self.lanes = LaneTills(settings, pos=pos, sink=sink, clock=clock, online=online,
                               members=directory, printers=printers,
                               registry=registry)
        self.server: CartScreenServer | None = None

    @property
    def url(self) -> str | None:
        return self.server.url if self.server is not None else None

    async def start(self) -> None:
        # Imported here: FastAPI costs the agent's start-up ~0.3 s, and a box without
        # lanes (the default) never serves them.
        from edge_agent.till.api import create_app

        await self.lanes.reconcile_spends()  # before a lane can sell
        self.server = CartScreenServer(create_app(self.lanes), host=self.settings.host,
                                       port=self.settings.port)
        await self.server.start()
        logger.info("lane tills at %s/till/v1 (%d lanes), cashier screen at %s/till/",
                    self.server.url, len(self.settings.lane), self.server.url)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
