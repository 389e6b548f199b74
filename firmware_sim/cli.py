"""``storefleet sim ...``: run simulators standalone against a store-local bus."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from firmware_sim.runner import run_until_stopped

if TYPE_CHECKING:
    import asyncio

# Simulators are imported inside the commands: `storefleet sim ... --help` must stay fast.

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
    ledger: Annotated[
        Path | None, typer.Option(help="append produced event ids to this file")
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
    layout: Annotated[Path | None, typer.Option(
        help="store layout TOML: run the whole store (carts, beacons, other families); "
             "'default' = the shipped demo store")] = None,
    carts: Annotated[int, typer.Option(min=0, help="smart carts (with --layout)")] = 3,
    radio: Annotated[Path | None, typer.Option(
        help="append simulated BLE advertisements here (with --layout); point the agent's "
             "beacon driver (backend=replay, follow=true) at it")] = None,
    customer_every: Annotated[float | None, typer.Option(
        min=0, help="a customer buys at the vending cabinet about every S seconds (with "
                    "--layout and --radio; 0: none) [default: 8]")] = None,
    cart_screen: Annotated[str | None, typer.Option(
        "--cart-screen", help="the agent's cart-screen URL (with --layout): carts pay there "
                              "at the end of each trip, so the store records cart sales")] = None,
) -> None:
    """Start a simulated store: devices publishing state, telemetry and events."""
    from firmware_sim.store import StoreSimulator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if layout is not None and str(layout) == "default":
        from firmware_sim.layouts import DEFAULT_LAYOUT

        layout = DEFAULT_LAYOUT
    sim = StoreSimulator(bus_url=bus, store_id=store_id, devices=devices, rate=rate,
                         max_events=events, tele_interval_s=tele_interval, ledger=ledger, seed=seed,
                         layout=layout, carts=carts if layout is not None else 0,
                         radio_path=radio if layout is not None else None,
                         cart_screen_url=cart_screen if layout is not None else None)
    wired_families: list[str] = []  # the serial and TCP device families started

    async def main(stop: asyncio.Event) -> None:
        closers: list[Callable[[], Awaitable[None]]] = []
        if layout is not None and radio is not None:
            import json

            from firmware_sim.store import (
                CUSTOMER_EVERY_S,
                start_wired_sims,
                store_device_configs,
            )

            # The serial and TCP devices (vending, printer + drawer, scanner, display)
            # run on ptys / a TCP port on this machine; the agent opens them there.
            every = CUSTOMER_EVERY_S if customer_every is None else customer_every
            wired, closers = await start_wired_sims(store_id, customer_every_s=every)
            wired_families.extend(d["family"] for d in wired)
            configs = store_device_configs(layout, radio_path=radio, store_id=store_id,
                                           audio_cache_dir=Path("audio-cache")) + wired
            typer.echo("agent devices for this store: set them as the desired shadow, e.g.\n"
                       f"  PUT /api/v1/stores/{store_id}/shadow/agent/desired with")
            typer.echo(json.dumps({"state": {"devices": {
                d["id"]: {k: v for k, v in d.items() if k != "id"} for d in configs}}}))
        try:
            await sim.run(stop)
        finally:
            for close in closers:
                await close()

    run_until_stopped(main, duration)
    typer.echo(f"produced {sim.produced} events from {devices} devices")
    if sim.families_started or wired_families:
        typer.echo(f"families simulated: {', '.join(sim.families_started + wired_families)}")


# POS peripherals and vending: storefleet sim printer | vending | scanner | display
from firmware_sim.printer.cli import register as _register_pos_sims  # noqa: E402

_register_pos_sims(app)

# E-shelf labels and audio units: storefleet sim esl | audio
from firmware_sim.audio.cli import register as _register_audio_sim  # noqa: E402
from firmware_sim.esl.cli import register as _register_esl_sim  # noqa: E402

_register_esl_sim(app)
_register_audio_sim(app)

# Many store boxes on the cloud broker (load generator): storefleet sim fleet
from firmware_sim.loadgen.cli import register as _register_loadgen  # noqa: E402

_register_loadgen(app)
