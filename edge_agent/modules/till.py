"""The till and the order desk (``[till]``; on by default): sales priced from signed
snapshots and price books, online orders, receipts on the store's peripherals.

With the content module running, the till reports the price book it actually prices
with, and since when, as the ``pricebook`` part of the store's content status (decision
0050): HQ sees per store when a price change reached the till.

With ``[till.lanes]`` the store's lane terminals sell through this till over HTTP
(``edge_agent.till``, decision 0063); with ``[members]`` too, they take signed member
codes and have the member's points authorised (decision 0064)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from edge_agent.kernel.module import Module, PayloadHandler
from edge_agent.modules.content import Content
from edge_agent.pos.peripherals import PosPeripherals
from edge_agent.pos.runtime import PosRuntime
from edge_agent.till.runtime import LaneService, printer_of
from edge_agent.till.settings import TillModuleSettings
from protocols import topics

if TYPE_CHECKING:
    from edge_agent.kernel.module import Kernel
    from edge_agent.kernel.supervisor import Supervisor


class Till(Module):
    name = "till"
    Settings = TillModuleSettings
    default_on: ClassVar[bool] = True
    # content: reports its price book there when content runs; members: the lanes find
    # members and authorise their spends through it when the box runs it
    after = ("content", "members")

    def __init__(self, kernel: Kernel, settings: TillModuleSettings) -> None:
        super().__init__(kernel, settings)
        self.pos = PosRuntime(settings, store_id=kernel.store_id, data_dir=kernel.data_dir,
                              clock=kernel.clock, registry=kernel.registry, sink=kernel.sink,
                              online=kernel.online, peripherals=self._peripherals)
        self.lanes = None if settings.lanes is None else LaneService(
            settings.lanes, pos=self.pos, sink=kernel.sink, clock=kernel.clock,
            online=kernel.online, printers=printer_of(kernel.drivers),
            registry=kernel.registry, members=kernel.module("members"))

    def _peripherals(self) -> PosPeripherals | None:
        """The till's printer, scanner and display among the running drivers, if any."""
        pos = PosPeripherals.find(self.kernel.drivers)
        return pos if pos.printer or pos.scanner or pos.display else None

    def content_handlers(self) -> Mapping[str, PayloadHandler]:
        async def pricebook(payload: bytes) -> None:
            await self.pos.handle_content("pricebook", payload)

        async def promotions(payload: bytes) -> None:
            await self.pos.handle_content("promotions", payload)

        return {"pricebook": pricebook, "promotions": promotions}

    def command_targets(self) -> Mapping[str, PayloadHandler]:
        async def orders(payload: bytes) -> None:
            await self.pos.orders.handle(payload)

        return {topics.ORDERS_TARGET: orders}

    async def open(self) -> None:
        await self.pos.open()

    async def resume(self) -> None:
        await self.pos.resume()  # re-emit sales a crash left half-written (outbox open)

    async def start(self, tasks: Supervisor) -> None:
        tasks.start("pos-sync", self.pos.sync_forever)
        content = self.kernel.module("content")
        if isinstance(content, Content):  # same version again: report_part ignores it
            self.pos.pricebook.on_applied(lambda version, applied_ms: content.report_part(
                "pricebook", version, applied_ms=applied_ms))
        if self.lanes is not None:
            await self.lanes.start()

    async def stop(self) -> None:
        if self.lanes is not None:
            await self.lanes.stop()

    async def close(self) -> None:
        await self.pos.close()

    def busy(self) -> str | None:
        selling = self.pos.service.selling + (self.lanes.lanes.selling if self.lanes else 0)
        return f"{selling} sale(s) being recorded" if selling else None

    def diagnostics(self) -> dict[str, Any]:
        return {"promotions_version": self.pos.promotions.version,
                "pricebook_version": self.pos.pricebook.version,
                "lanes_url": self.lanes.url if self.lanes else None}


MODULE = Till
