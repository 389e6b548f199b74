"""Simulated serial barcode scanner (AIM ID prefix + CR suffix) on a pty."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from firmware_sim.printer.ports import PtyPort

# symbology -> AIM identifier the scanner prefixes
AIM_IDS = {"EAN13": "]E0", "EAN8": "]E4", "CODE128": "]C0", "GS1-128": "]C1", "QR": "]Q1",
           "CODE39": "]A0", "DATAMATRIX": "]d1"}


class ScannerSim:
    def __init__(self, port: PtyPort, *, suffix: bytes = b"\r\n") -> None:
        self.port = port
        self.suffix = suffix

    async def scan(self, data: str, symbology: str = "EAN13") -> None:
        await self.port.write(AIM_IDS[symbology].encode() + data.encode() + self.suffix)

    async def garbage(self, nbytes: int, *, seed: int = 3) -> None:
        rng = random.Random(seed)
        await self.port.write(bytes(rng.randrange(256) for _ in range(nbytes)))


async def start_scanner_sim(*, link: Path | None = None) -> ScannerSim:
    """A scanner on a new pty; the driver opens ``sim.port.path``; ``sim.port.close()``."""
    return ScannerSim(PtyPort(link=link).open())


async def scan_forever(sim: ScannerSim, codes: list[tuple[str, str]], *,
                       interval_s: float = 2.0) -> None:
    """Scan ``(data, symbology)`` codes round-robin (for the store simulator and CLI)."""
    i = 0
    while True:
        data, symbology = codes[i % len(codes)]
        await sim.scan(data, symbology)
        i += 1
        await asyncio.sleep(interval_s)


__all__ = ["AIM_IDS", "ScannerSim", "scan_forever", "start_scanner_sim"]
