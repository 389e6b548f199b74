"""Simulated 2 x 20 customer display on a pty: shows what the driver sends."""

from __future__ import annotations

import asyncio
from pathlib import Path

from firmware_sim.printer.ports import PortClosed, PtyPort
from protocols.linedisplay import Screen


class DisplaySim:
    def __init__(self, port: PtyPort) -> None:
        self.port = port
        self.screen = Screen()
        self.changed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                self.screen.feed(await self.port.read())
                self.changed.set()
            except PortClosed:
                await asyncio.sleep(0.02)  # unplugged: wait for replug

    async def wait_for(self, line1: str, wait_s: float = 5.0) -> tuple[str, ...]:
        async def wait() -> None:
            while self.screen.lines()[0].rstrip() != line1:
                self.changed.clear()
                await self.changed.wait()

        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
        # cancellation that races with completion (the task then never stops).
        async with asyncio.timeout(wait_s):
            await wait()
        return self.screen.lines()


async def start_display_sim(*, link: Path | None = None) -> tuple[DisplaySim, asyncio.Task[None]]:
    sim = DisplaySim(PtyPort(link=link).open())
    task = asyncio.create_task(sim.run(), name=f"display-sim-{sim.port.slave_name}")
    return sim, task


__all__ = ["DisplaySim", "start_display_sim"]
