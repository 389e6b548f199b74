"""The printer and vending simulators as their CLIs run them, driven by third-party
clients: python-escpos ``Network`` (the blocking client a real POS would use, run in a
thread) and raw pyserial on the vending pty."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import serial
from escpos.printer import Network

from firmware_sim.printer.sim import start_printer_sim
from protocols import vending as v
from tests.edge_agent.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


async def start_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "firmware_sim", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def escpos_client(port: int) -> tuple[bool, int]:
    printer = Network("127.0.0.1", port, timeout=5)
    printer.set(bold=True, align="center")
    printer.textln("ORDER 42")
    printer.set(bold=False, align="left")
    printer.textln("1 x Pizza          9.50")
    online, paper = printer.is_online(), printer.paper_status()
    printer.cut()
    printer.close()
    return online, paper


async def test_cli_printer_takes_python_escpos_and_writes_receipts(tmp_path: Path) -> None:
    proc = await start_cli("printer", "--port", "0", "--out", str(tmp_path), "--duration", "20")
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        port = int(line.rsplit(":", 1)[1])
        # python-escpos blocks on its socket; a thread keeps this test's loop free
        online, paper = await asyncio.to_thread(escpos_client, port)
        assert online is True and paper == 2
        receipt = tmp_path / "receipt-0001.txt"
        await wait_until(receipt.exists, within_s=5, what="receipt file")
        assert receipt.read_text().splitlines() == ["                 ORDER 42",
                                                    "1 x Pizza          9.50"]
    finally:
        proc.terminate()
        await proc.wait()


async def test_python_escpos_reads_paper_out_from_the_simulator() -> None:
    sim, server = await start_printer_sim(port=0)
    sim.set_state(paper="out")
    try:
        online, paper = await asyncio.to_thread(escpos_client, server.sockets[0].getsockname()[1])
        assert (online, paper) == (False, 0)
        await wait_until(lambda: bool(sim.held), within_s=5, what="held page")
        assert sim.pages == [] and len(sim.held) == 1  # held until paper is back
        sim.set_state(paper="ok")
        assert sim.pages[0].lines[0].text == "ORDER 42"
    finally:
        server.close()
        await sim.aclose()
        await server.wait_closed()


def board_status(path: str) -> v.CabinetStatus:
    with serial.Serial(path, 9600, timeout=2) as port:
        port.write(v.encode(v.Frame(1, v.Cmd.STATUS)))
        frames: list[v.Frame | v.Rejected] = []
        dec = v.FrameDecoder()
        while not frames:
            frames = dec.feed(port.read(1))
    (reply,) = frames
    assert isinstance(reply, v.Frame) and reply.seq == 1
    return v.CabinetStatus.decode(reply.payload)


async def test_cli_vending_prints_its_pty_and_answers_on_it() -> None:
    proc = await start_cli("vending", "--pty", "--duration", "20")
    try:
        assert proc.stdout is not None
        path = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode().strip()
        assert path.startswith("/dev/pts/")
        status = await asyncio.to_thread(board_status, path)  # pyserial blocks: thread
        assert status.open_doors == frozenset() and status.temperature_c == 4.0
    finally:
        proc.terminate()
        await proc.wait()
