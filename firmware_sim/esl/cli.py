"""``storefleet sim esl``: a simulated ESL access point with its labels, standalone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from firmware_sim.runner import run_until_stopped

if TYPE_CHECKING:
    import asyncio


def register(app: typer.Typer) -> None:
    @app.command("esl")
    def esl(
        bus: Annotated[str, typer.Option(help="store-local MQTT bus URL")] = "mqtt://127.0.0.1:1884",
        ap_id: Annotated[str, typer.Option("--ap", help="access point id")] = "S001-esl-01",
        labels: Annotated[int, typer.Option(min=1, max=20_000, help="labels behind it")] = 100,
        interval: Annotated[float, typer.Option(min=0.1, help="check-in interval, s")] = 40.0,
        miss: Annotated[float, typer.Option(min=0, max=1, help="missed check-in rate")] = 0.05,
        seed: Annotated[int, typer.Option(help="random seed")] = 7,
        duration: Annotated[float | None, typer.Option(help="stop after this many s")] = None,
    ) -> None:
        """Labels L000.. check in with the AP, pull their job and acknowledge it."""
        from firmware_sim.esl.ap import start_esl_ap_sim

        names = [f"L{i:03d}" for i in range(labels)]

        async def main(stop: asyncio.Event) -> None:
            sim = await start_esl_ap_sim(bus, ap_id=ap_id, labels=names,
                                         checkin_interval_s=interval, miss_prob=miss, seed=seed)
            try:
                await stop.wait()
            finally:
                await sim.aclose()
            shown = sum(1 for label in sim.labels.values() if label.shown_hash)
            typer.echo(f"{ap_id}: {sim.stats['jobs']} jobs, {sim.stats['acks']} acks, "
                       f"{shown}/{labels} labels showing a price")

        run_until_stopped(main, duration)
