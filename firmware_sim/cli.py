"""``storefleet sim ...``: run simulators standalone against a store-local bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from firmware_sim.store import StoreSimulator

app = typer.Typer(help="Device and store simulators speaking the real wire protocols.",
                  no_args_is_help=True)


@app.command("store")
def store(
    bus: Annotated[str, typer.Option(help="store-local MQTT bus URL")] = "mqtt://127.0.0.1:1884",
    store_id: Annotated[str, typer.Option("--store", help="store id")] = "S001",
    devices: Annotated[int, typer.Option(min=1, help="number of simulated devices")] = 6,
    rate: Annotated[float, typer.Option(min=0, help="events/s for the store (0 = max)")] = 20.0,
    events: Annotated[int | None, typer.Option(help="stop after this many events")] = None,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    tele_interval: Annotated[float, typer.Option(help="telemetry interval, seconds")] = 5.0,
    ledger: Annotated[Path | None, typer.Option(help="append produced event ids to this file")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
) -> None:
    """Start a simulated store: devices publishing state, telemetry and events."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sim = StoreSimulator(bus_url=bus, store_id=store_id, devices=devices, rate=rate,
                         max_events=events, tele_interval_s=tele_interval, ledger=ledger, seed=seed)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        await sim.run(stop)

    asyncio.run(main())
    typer.echo(f"produced {sim.produced} events from {devices} devices")
