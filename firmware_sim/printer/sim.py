"""A receipt printer that understands ESC/POS, on TCP 9100 and/or a serial line.

It answers real-time status queries (DLE EOT n, GS r n) from its ``state`` (paper,
cover, drawer), kicks its cash drawer on ESC p / DLE DC4, and keeps every page it
cuts; with ``out_dir`` each page is also written as ``receipt-NNNN.txt``. Pages cut
while the printer is offline (cover open, paper out) are held and printed on recovery,
as a real printer holds its buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import struct
from pathlib import Path

from firmware_sim.printer.ports import PortClosed, PtyPort
from protocols import escpos

logger = logging.getLogger(__name__)


class PrinterSim:
    def __init__(self, *, out_dir: Path | None = None, width: int = 42) -> None:
        self.state = escpos.PrinterState()
        self.pages: list[escpos.Page] = []
        self.held: list[escpos.Page] = []
        self.kicks: list[escpos.DrawerKick] = []
        self.status_queries = 0
        self.unknown_commands = 0
        self.out_dir = out_dir
        self.width = width
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[object]] = set()
        self._page_ready = asyncio.Event()

    # ---- what the shop floor does to the printer -------------------------------------------

    def set_state(self, **changes: object) -> None:
        """e.g. ``set_state(paper="out")``, ``set_state(cover_open=True)``."""
        self.state = dataclasses.replace(self.state, **changes)  # type: ignore[arg-type]
        if not self.state.offline and self.held:
            for page in self.held:
                self._print(page)
            self.held.clear()

    def close_drawer(self) -> None:
        self.set_state(drawer_open=False)

    def reset_connections(self) -> None:
        """TCP reset on every open connection (a printer rebooting, a switch port flap)."""
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                # linger 0 turns close() into an RST instead of an orderly FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    async def aclose(self) -> None:
        """Drop every open connection and wait for its handler (after ``server.close()``)."""
        handlers = list(self._handlers)
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def wait_pages(self, n: int, wait_s: float = 5.0) -> list[escpos.Page]:
        async def wait() -> None:
            while len(self.pages) < n:
                self._page_ready.clear()
                await self._page_ready.wait()

        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
        # cancellation that races with completion (the task then never stops).
        async with asyncio.timeout(wait_s):
            await wait()
        return self.pages

    # ---- the printer -------------------------------------------------------------------------

    def _act(self, parser: escpos.EscPosParser, data: bytes) -> bytes:
        """Feed received bytes; returns the bytes to answer (status replies)."""
        reply = b""
        for item in parser.feed(data):
            if isinstance(item, escpos.StatusRequest):
                self.status_queries += 1
                reply += self.state.status_byte(item)
            elif isinstance(item, escpos.DrawerKick):
                self.kicks.append(item)
                self.set_state(drawer_open=True)
            elif self.state.offline:
                self.held.append(item)
            else:
                self._print(item)
        self.unknown_commands = max(self.unknown_commands, parser.unknown)
        return reply

    def _print(self, page: escpos.Page) -> None:
        if not page.lines:
            return  # a cut with nothing before it (a feed-and-cut) prints no receipt
        self.pages.append(page)
        self._page_ready.set()
        if self.out_dir is not None:
            path = self.out_dir / f"receipt-{len(self.pages):04d}.txt"
            # A few KB to local disk once per receipt, written in order; a thread hop
            # per file would cost more than the write and could reorder the files.
            # Written beside and renamed, so a reader watching the folder never sees
            # a receipt half written (a CI run read one empty).
            partial = path.with_suffix(".part")
            partial.write_text(page.text(width=self.width), encoding="utf-8")
            os.replace(partial, path)
            logger.info("printed %s (%d lines)", path.name, len(page.lines))

    async def handle_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        if (me := asyncio.current_task()) is not None:
            self._handlers.add(me)
        parser = escpos.EscPosParser()
        try:
            while data := await reader.read(4096):
                if reply := self._act(parser, data):
                    writer.write(reply)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass  # the client went away mid-job; what we have is printed below
        finally:
            self._writers.discard(writer)
            if me is not None:
                self._handlers.discard(me)
            self._finish(parser)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def _finish(self, parser: escpos.EscPosParser) -> None:
        # A client that disconnects without a cut still gets its text printed.
        page = parser.flush()
        if page is not None:
            (self.held.append if self.state.offline else self._print)(page)

    async def run_serial(self, port: PtyPort) -> None:
        parser = escpos.EscPosParser()
        while True:
            try:
                data = await port.read()
                if reply := self._act(parser, data):
                    await port.write(reply)
            except PortClosed:
                await asyncio.sleep(0.02)  # unplugged: wait for replug


async def start_printer_sim(*, host: str = "127.0.0.1", port: int = 9100,
                            out_dir: Path | None = None, width: int = 42
                            ) -> tuple[PrinterSim, asyncio.Server]:
    """Serve ESC/POS on TCP ``host:port`` (0 = any free port: ``server.sockets[0]``).
    Close the server to stop."""
    if out_dir is not None:
        await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    sim = PrinterSim(out_dir=out_dir, width=width)
    server = await asyncio.start_server(sim.handle_tcp, host, port)
    return sim, server


async def start_serial_printer_sim(*, link: Path | None = None, out_dir: Path | None = None
                                   ) -> tuple[PrinterSim, PtyPort, asyncio.Task[None]]:
    """A printer on a pty; the driver opens ``port.path``."""
    sim = PrinterSim(out_dir=out_dir)
    pty = PtyPort(link=link).open()
    task = asyncio.create_task(sim.run_serial(pty), name=f"printer-sim-{pty.slave_name}")
    return sim, pty, task
