"""One API for the till's peripherals, used by the POS and by online-order printing.

    pos = PosPeripherals(printer=printer_driver, scanner=scanner_driver,
                         display=display_driver)
    await pos.show("Cola 330ml", two_columns("TOTAL", "2.50"))
    await pos.print_receipt(receipt)     # PeripheralUnavailable if it cannot print now
    await pos.open_drawer()
    async for scan in pos.scans(): ...
    pos.status()                          # frozen snapshot, cheap

Built on the drivers (which the supervisor runs and reconnects); this class holds no
connection of its own. Errors: ``PosError`` (base of the package) and
``PeripheralUnavailable`` (``device``: which peripheral, ``reason``), converted from
the drivers' errors here, where they enter the POS.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from edge_agent.drivers.base import DeviceHealth, DriverError
from edge_agent.drivers.capabilities import (
    CUSTOMER_DISPLAY,
    RECEIPT_PRINTER,
    SCANNER,
    Capability,
    CustomerDisplay,
    ReceiptPrinter,
    Scanner,
)
from edge_agent.pos.receipt import Receipt
from edge_agent.pos.render import render_receipt, render_ticket
from protocols.aim import Scan
from protocols.errors import StorefleetError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CapabilityFinder(Protocol):
    """What finds the till's devices: the agent's ``DriverSupervisor``."""

    def find(self, capability: Capability[T]) -> list[T]: ...


class PosError(StorefleetError):
    """Base error of the POS package."""


class PeripheralUnavailable(PosError):
    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"{device}: {reason}")
        self.device = device
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PeripheralStatus:
    printer: DeviceHealth | None
    scanner: DeviceHealth | None
    display: DeviceHealth | None
    drawer: str  # open | closed | unknown | none

    @property
    def can_print(self) -> bool:
        p = self.printer
        return bool(p and p.online and not {"paper_out", "cover_open", "printer_error"}
                    & set(p.alarms))


class PosPeripherals:
    def __init__(self, *, printer: ReceiptPrinter | None = None,
                 scanner: Scanner | None = None, display: CustomerDisplay | None = None,
                 width: int = 42) -> None:
        self.printer = printer
        self.scanner = scanner
        self.display = display
        self._width = width  # printer columns: 42 on most 80 mm models in font A

    @classmethod
    def find(cls, drivers: CapabilityFinder, *, width: int = 42) -> PosPeripherals:
        """The first receipt printer, scanner and customer display the drivers provide."""
        return cls(printer=next(iter(drivers.find(RECEIPT_PRINTER)), None),
                   scanner=next(iter(drivers.find(SCANNER)), None),
                   display=next(iter(drivers.find(CUSTOMER_DISPLAY)), None), width=width)

    @classmethod
    def from_drivers(cls, drivers: Iterable[object], *, width: int = 42) -> PosPeripherals:
        """Pick the first printer, scanner and display among a till's drivers."""
        drivers = list(drivers)
        return cls(printer=next((d for d in drivers if isinstance(d, ReceiptPrinter)), None),
                   scanner=next((d for d in drivers if isinstance(d, Scanner)), None),
                   display=next((d for d in drivers if isinstance(d, CustomerDisplay)), None),
                   width=width)

    def _printer(self) -> ReceiptPrinter:
        if self.printer is None:
            raise PeripheralUnavailable("printer", "no receipt printer configured")
        return self.printer

    async def _print(self, job: bytes) -> None:
        try:
            await self._printer().print_bytes(job)
        except DriverError as err:
            raise PeripheralUnavailable("printer", err.detail) from err

    async def print_receipt(self, receipt: Receipt) -> None:
        await self._print(render_receipt(receipt, width=self._width))

    async def print_ticket(self, lines: Iterable[str]) -> None:
        await self._print(render_ticket(lines, width=self._width))

    async def open_drawer(self) -> None:
        try:
            await self._printer().kick_drawer()
        except DriverError as err:
            raise PeripheralUnavailable("drawer", err.detail) from err

    async def show(self, line1: str, line2: str = "") -> bool:
        """Best effort: False when the display is offline (it is re-sent on reconnect);
        a missing customer display never stops a sale."""
        if self.display is None:
            return False
        try:
            await self.display.show(line1, line2)
        except DriverError as err:
            logger.info("customer display: %s", err.detail)
            return False
        return True

    async def scans(self) -> AsyncIterator[Scan]:
        if self.scanner is None:
            raise PeripheralUnavailable("scanner", "no scanner configured")
        async for scan in self.scanner.scans():
            yield scan

    def status(self) -> PeripheralStatus:
        drawer = "none"
        if self.printer is not None and self.printer.drawer is not None:
            drawer = self.printer.drawer.state
        return PeripheralStatus(
            printer=self.printer.health() if self.printer else None,
            scanner=self.scanner.health() if self.scanner else None,
            display=self.display.health() if self.display else None,
            drawer=drawer)
