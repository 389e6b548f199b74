"""ESC/POS receipt printer driver (TCP 9100 or serial), with its cash drawer.

Options (``PrinterOptions``)::

    host = "10.0.0.7"        # TCP; or port = "/dev/ttyUSB0" (+ baudrate) for serial
    tcp_port = 9100
    status_interval_s = 2.0  # DLE EOT 1/2/4 poll
    status_timeout_s = 0.5
    drawer = true            # a cash drawer hangs on the DK port
    drawer_open_alarm_s = 60

Commands: ``open_drawer`` (sensitive: only with a reason, decision 0044), ``status``,
``print_text`` {lines: [str]}. Capability: ``ReceiptPrinter`` (the cash drawer is part
of it: there is no second wire to a drawer).

Jobs arrive as ESC/POS bytes (rendered with python-escpos by ``edge_agent.pos``) and
are written in one piece under the link lock, so a status query never lands in the
middle of a receipt. A printer that is offline (paper out, cover open) refuses jobs
with ``PrinterUnavailable`` so the caller can queue or reroute. Every alarm transition
(raised or cleared) emits one ``device_alarm`` event; the drawer's transitions emit
``device_event``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from escpos.constants import RT_STATUS
from prometheus_client import Counter
from pydantic import Field

from edge_agent.drivers.base import (
    CommandArgs,
    CommandRejected,
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverContext,
    DriverError,
    command,
    register,
)
from edge_agent.drivers.capabilities import ReceiptPrinter
from edge_agent.drivers.links import (
    ByteLink,
    LinkOptions,
    LinkTimeout,
    link_metrics,
    open_link,
)
from edge_agent.drivers.printer.drawer import CashDrawer
from edge_agent.drivers.printer.render import render_lines
from edge_agent.metrics import registry_scoped
from protocols import escpos

logger = logging.getLogger(__name__)


class PrinterUnavailable(DriverError):
    """The printer cannot take a job now (``alarms`` says why)."""

    def __init__(self, device_id: str, alarms: tuple[str, ...]) -> None:
        super().__init__(device_id, f"printer unavailable: {', '.join(alarms) or 'offline'}")
        self.alarms = alarms


def state_alarms(state: escpos.PrinterState) -> set[str]:
    alarms = set()
    if state.paper == "out":
        alarms.add("paper_out")
    elif state.paper == "near_end":
        alarms.add("paper_low")
    if state.cover_open:
        alarms.add("cover_open")
    if state.error:
        alarms.add("printer_error")
    return alarms


def _jobs_counter(ctx: DriverContext) -> Counter:
    return registry_scoped(ctx.registry, "printer_jobs", lambda r: Counter(
        "storefleet_printer_jobs", "print jobs by result", ["device", "result"], registry=r))


class PrinterOptions(LinkOptions):
    status_interval_s: float = Field(2.0, gt=0)  # DLE EOT 1/2/4 poll period
    status_timeout_s: float = Field(0.5, gt=0)  # an answer to one status query
    drawer: bool = True  # a cash drawer hangs on the DK port
    # A till left open this long is a loss-prevention alarm.
    drawer_open_alarm_s: float = Field(60.0, gt=0)


class PrintText(CommandArgs):
    lines: list[str] = Field(max_length=500)  # a receipt, not a book


@register
class PrinterDriver(Driver, ReceiptPrinter):
    family = "printer"
    Options = PrinterOptions
    options: PrinterOptions

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        o = self.options
        self._interval = o.status_interval_s
        self._timeout = o.status_timeout_s
        self.drawer = (CashDrawer(clock=ctx.clock, open_alarm_s=o.drawer_open_alarm_s)
                       if o.drawer else None)
        self._metrics = link_metrics(ctx.registry)
        self._jobs = _jobs_counter(ctx)
        self._link: ByteLink | None = None
        self._lock = asyncio.Lock()
        self._state: escpos.PrinterState | None = None
        self._alarms: set[str] = set()
        self._last_seen: int | None = None
        self._status_changed = asyncio.Event()

    # ---- run --------------------------------------------------------------------------------

    async def run(self) -> None:
        link = await open_link(self.device_id, self.options)
        self._link = link
        try:
            while True:
                await self.refresh_status()
                await asyncio.sleep(self._interval)
        finally:
            self._link = None
            self._state = None
            await link.close()

    async def _query(self, link: ByteLink, n: int) -> int:
        link.discard_input()  # an answer must belong to this question
        await link.write(RT_STATUS + bytes((n,)))
        data = await link.read(wait_s=self._timeout)
        if len(data) != 1:
            self._metrics.rejected.labels(device=self.device_id, reason="bad_status").inc()
        return data[-1]

    async def refresh_status(self) -> escpos.PrinterState:
        link = self._link
        if link is None:
            raise PrinterUnavailable(self.device_id, ("offline",))
        async with self._lock:
            try:
                values = [await self._query(link, n) for n in (1, 2, 4)]
            except LinkTimeout:
                self._metrics.timeouts.labels(device=self.device_id).inc()
                raise
        try:
            state = escpos.parse_status(*values)
        except escpos.StatusByteError as err:
            self._metrics.rejected.labels(device=self.device_id, reason="bad_status").inc()
            raise DriverError(self.device_id, str(err)) from err
        self._state = state
        self._last_seen = self.ctx.clock.now_ms()
        await self._on_state(state)
        return state

    async def _on_state(self, state: escpos.PrinterState) -> None:
        alarms = state_alarms(state)
        if self.drawer is not None:
            change = self.drawer.update(state.drawer_open)
            if change is not None:
                await self.ctx.emit_event("device_event", device_id=self.device_id,
                                          data={"event": change.value, "family": "printer"})
            alarms |= set(self.drawer.alarms())
        for code in sorted(alarms ^ self._alarms):
            active = code in alarms
            logger.info("%s: alarm %s %s", self.device_id, code, "raised" if active else "cleared")
            await self.ctx.emit_event("device_alarm", device_id=self.device_id,
                                      data={"alarm": code, "active": active, "family": "printer"})
        if alarms != self._alarms:
            self._status_changed.set()
        self._alarms = alarms

    # ---- jobs ---------------------------------------------------------------------------------

    async def print_bytes(self, data: bytes) -> None:
        """Send one rendered job. ``PrinterUnavailable`` if offline or out of paper."""
        link = self._link
        blocking = tuple(sorted(self._alarms & {"paper_out", "cover_open", "printer_error"}))
        if link is None or self._state is None or blocking:
            self._jobs.labels(device=self.device_id, result="refused").inc()
            raise PrinterUnavailable(self.device_id, blocking or ("offline",))
        async with self._lock:
            try:
                await link.write(data)
            except DriverError:
                self._jobs.labels(device=self.device_id, result="failed").inc()
                raise
        self._jobs.labels(device=self.device_id, result="printed").inc()

    async def kick_drawer(self) -> None:
        if self.drawer is None:
            raise CommandRejected(self.device_id, "no cash drawer on this printer")
        link = self._link
        if link is None:
            raise PrinterUnavailable(self.device_id, ("offline",))
        async with self._lock:
            await link.write(self.drawer.kick_bytes())

    # ---- health and commands ----------------------------------------------------------------

    def health(self) -> DeviceHealth:
        alarms = set(self._alarms)
        if self.drawer is not None:
            alarms |= set(self.drawer.alarms())  # the open-too-long clock runs between polls
        details: dict[str, Any] = {}
        if self._state is not None:
            details["paper"] = self._state.paper
            details["cover_open"] = self._state.cover_open
        if self.drawer is not None:
            details["drawer"] = self.drawer.state
        return DeviceHealth(online=self._link is not None and self._state is not None,
                            last_seen_ms=self._last_seen, alarms=tuple(sorted(alarms)),
                            details=details)

    @command("open_drawer", sensitive=True)
    async def _open_drawer(self, args: Any) -> dict[str, Any]:
        await self.kick_drawer()
        return {"kicked": True}

    @command("status")
    async def _cmd_status(self, args: Any) -> dict[str, Any]:
        state = await self.refresh_status()
        return {"paper": state.paper, "cover_open": state.cover_open,
                "drawer_open": state.drawer_open, "alarms": sorted(self._alarms)}

    @command("print_text", PrintText)
    async def _print_text(self, args: PrintText) -> dict[str, Any]:
        await self.print_bytes(render_lines(args.lines))
        return {"printed": len(args.lines)}
