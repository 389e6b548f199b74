"""``storefleet sim fleet``: many simulated store boxes on one cloud broker.

    storefleet sim fleet --broker mqtt://127.0.0.1:1883 --stores 500 --rate 0.2 \\
        --api http://127.0.0.1:8000 --token $DEVICE_TOKEN --storm-every 120

SIGUSR1 cuts every connection at once (a reconnect storm), as ``--storm-every`` does."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("fleet")(fleet)


def fleet(
    broker: Annotated[str, typer.Option(help="cloud broker URL (mqtt://[user:pw@]host:port)")]
    = "mqtt://127.0.0.1:1883",
    stores: Annotated[int, typer.Option(min=1, help="simulated stores")] = 100,
    devices_per_store: Annotated[int, typer.Option(min=1, help="devices in each birth")] = 4,
    rate: Annotated[float, typer.Option(min=0, help="events per second per store")] = 0.2,
    prefix: Annotated[str, typer.Option(help="store ids: prefix + 5 digits")] = "LG",
    first: Annotated[int, typer.Option(min=0, help="number of the first store")] = 0,
    credentials: Annotated[Path | None, typer.Option(
        help="file of 'store_id username password' lines (stores' own credentials)")] = None,
    api: Annotated[str | None, typer.Option(
        help="cloud API URL: fetch announced promotion snapshots, so sales are priced")]
    = None,
    token: Annotated[str | None, typer.Option(help="API token for --api (device role)")] = None,
    cloud: Annotated[bool, typer.Option(
        help="a cloud answers births and acknowledges events (--no-cloud: a plain broker, "
             "events leave the outbox on PUBACK)")] = True,
    tele_interval: Annotated[float, typer.Option(min=0.1, help="telemetry every S seconds")]
    = 30.0,
    storm_every: Annotated[float | None, typer.Option(
        min=1, help="cut every connection at once every S seconds")] = None,
    status_file: Annotated[Path | None, typer.Option(
        help="write the fleet's counters here as JSON every half second")] = None,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
) -> None:
    """Simulated store boxes, each its own MQTT session: births, Last Wills, outboxes,
    sales, vends, coupons, alarms, telemetry, command answers; reconnect storms."""
    import asyncio
    import json
    import signal

    from firmware_sim.loadgen.fleet import LoadFleet, raise_fd_limit
    from firmware_sim.loadgen.identity import identities, read_credentials, store_ids
    from firmware_sim.loadgen.snapshots import SnapshotSource
    from firmware_sim.loadgen.store import StoreSettings
    from firmware_sim.mqtturl import bus_address
    from firmware_sim.runner import run_until_stopped

    raise_fd_limit()
    address = bus_address(broker)
    ids = store_ids(prefix, stores, first=first)
    who = identities(ids, broker=address,
                     credentials=read_credentials(credentials) if credentials else None)
    settings = StoreSettings(devices=devices_per_store, tele_interval_s=tele_interval,
                             cloud=cloud)
    result: dict[str, object] = {}

    async def main(stop: asyncio.Event) -> None:
        snapshots = SnapshotSource(api, token=token or "") if api else None
        sim = LoadFleet(who, settings=settings, rate_per_store=rate, snapshots=snapshots,
                        seed=seed, status_file=status_file)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, sim.storm)
        storms = None
        if storm_every is not None:
            async def every() -> None:
                while True:
                    await asyncio.sleep(storm_every)
                    sim.storm()
            storms = asyncio.create_task(every(), name="fleet-storm-every")
        try:
            await sim.run(stop)
        finally:
            if storms is not None:
                storms.cancel()
            if snapshots is not None:
                await snapshots.aclose()
        result.update(sim.status())

    run_until_stopped(main, duration)
    typer.echo(json.dumps(result))

