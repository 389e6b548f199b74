"""``storefleet sim printer|vending|scanner|display``: the POS and vending simulators
standalone, for a real agent (or a real POS) to talk to."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from firmware_sim.runner import run_until_stopped

if TYPE_CHECKING:
    import asyncio

# The simulators are imported inside each command: `storefleet sim ... --help` must not
# load them (issue 11: every --help under 0.5 s).

Duration = Annotated[float | None, typer.Option(help="stop after this many seconds")]
Link = Annotated[Path | None, typer.Option(help="also make this stable symlink to the pty")]


def printer(
    port: Annotated[int, typer.Option(help="TCP port (9100 is the raw-printing standard)")] = 9100,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    out: Annotated[Path | None, typer.Option(help="write each cut receipt here as text")] = None,
    serial: Annotated[bool, typer.Option(help="also listen on a pty (prints its path)")] = False,
    width: Annotated[int, typer.Option(help="columns for the text files")] = 42,
    duration: Duration = None,
) -> None:
    """An ESC/POS receipt printer: any client (python-escpos, a real POS) can print to it."""
    from firmware_sim.printer.sim import start_printer_sim, start_serial_printer_sim

    async def main(stop: asyncio.Event) -> None:
        sim, server = await start_printer_sim(host=host, port=port, out_dir=out, width=width)
        typer.echo(f"printer listening on {host}:{server.sockets[0].getsockname()[1]}")
        serial_task = None
        if serial:
            _, pty, serial_task = await start_serial_printer_sim(out_dir=out)
            typer.echo(f"printer serial port {pty.path}")
        await stop.wait()
        server.close()
        await sim.aclose()
        if serial_task is not None:
            serial_task.cancel()
        typer.echo(f"printed {len(sim.pages)} receipts, {len(sim.kicks)} drawer kicks")

    run_until_stopped(main, duration)


def vending(
    pty: Annotated[bool, typer.Option("--pty", help="serve on a new pseudo-terminal")] = True,
    link: Link = None,
    doors: Annotated[int, typer.Option(min=1, max=16)] = 8,
    corrupt_every: Annotated[int, typer.Option(help="corrupt every Nth reply")] = 0,
    drop_every: Annotated[int, typer.Option(help="drop every Nth reply")] = 0,
    delay: Annotated[float, typer.Option(help="reply delay, seconds")] = 0.0,
    jam: Annotated[list[int] | None, typer.Option(help="door that jams (repeatable)")] = None,
    customer_every: Annotated[float, typer.Option(help="a customer every S seconds (0: none)")
                              ] = 0.0,
    door: Annotated[int, typer.Option(help="the door customers pick")] = 0,
    funds: Annotated[int, typer.Option(help="customer funds, minor units")] = 1000,
    duration: Duration = None,
) -> None:
    """A vending cabinet (lock board + cashless reader) on a pty; prints the device path."""
    import asyncio

    from firmware_sim.vending import VendingFaults, start_vending_sim

    if not pty:
        raise typer.BadParameter("only --pty is supported (a real cabinet has its own port)")
    faults = VendingFaults(corrupt_every=corrupt_every, drop_every=drop_every, delay_s=delay,
                           jammed_doors=set(jam or ()))

    async def main(stop: asyncio.Event) -> None:
        sim, task = await start_vending_sim(link=link, doors=doors, faults=faults)
        typer.echo(sim.port.path)
        while not stop.is_set():
            if customer_every > 0:
                sim.customer(door=door, funds=funds)
                sim.close_door(door)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), customer_every or None)
        task.cancel()
        typer.echo(f"{len(sim.vends)} vend requests, {len(sim.unlocks)} doors released")

    run_until_stopped(main, duration)


def scanner(
    link: Link = None,
    codes: Annotated[str, typer.Option(help="data:SYMBOLOGY,... scanned round-robin")
                     ] = "4006381333931:EAN13,96385074:EAN8",
    interval: Annotated[float, typer.Option(help="seconds between scans")] = 2.0,
    duration: Duration = None,
) -> None:
    """A serial barcode scanner (AIM prefix + CR) on a pty; prints the device path."""
    import asyncio

    from firmware_sim.scanner import scan_forever, start_scanner_sim

    pairs = [tuple(c.rsplit(":", 1)) for c in codes.split(",") if ":" in c]

    async def main(stop: asyncio.Event) -> None:
        sim = await start_scanner_sim(link=link)
        typer.echo(sim.port.path)
        task = asyncio.create_task(scan_forever(sim, pairs, interval_s=interval),  # type: ignore[arg-type]
                                   name="scanner-sim")
        await stop.wait()
        task.cancel()
        sim.port.close()

    run_until_stopped(main, duration)


def display(link: Link = None, duration: Duration = None) -> None:
    """A 2 x 20 customer display on a pty; prints the device path, then what it shows."""
    import asyncio

    from firmware_sim.display import start_display_sim

    async def main(stop: asyncio.Event) -> None:
        sim, task = await start_display_sim(link=link)
        typer.echo(sim.port.path)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sim.changed.wait(), 0.5)
            if sim.changed.is_set():
                sim.changed.clear()
                typer.echo(" | ".join(sim.screen.lines()))
        task.cancel()

    run_until_stopped(main, duration)


def register(app: typer.Typer) -> None:
    """Add these commands to ``storefleet sim``."""
    for fn in (printer, vending, scanner, display):
        app.command(fn.__name__)(fn)
