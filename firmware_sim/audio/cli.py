"""``storefleet sim audio``: a simulated audio unit, standalone; renders what it played."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from firmware_sim.runner import run_until_stopped

if TYPE_CHECKING:
    import asyncio

# A WAV of more than an hour at 8 kHz is 58 MB; past that, use the segment log.
MAX_WAV_S = 3600.0


def register(app: typer.Typer) -> None:
    @app.command("audio")
    def audio(
        bus: Annotated[str, typer.Option(help="store-local MQTT bus URL")] = "mqtt://127.0.0.1:1884",
        unit_id: Annotated[str, typer.Option("--unit", help="audio unit id")] = "S001-audio-01",
        zone: Annotated[str, typer.Option(help="zone to render to the WAV file")] = "floor",
        wav: Annotated[Path | None, typer.Option(help="render what played to this WAV")] = None,
        log: Annotated[Path | None, typer.Option(help="write segments as JSON lines")] = None,
        duration: Annotated[float | None, typer.Option(help="stop after this many s")] = None,
    ) -> None:
        """Play what the agent's audio driver says; log segments and render a WAV at the end."""
        from firmware_sim.audio.unit import start_audio_unit_sim


        async def main(stop: asyncio.Event) -> None:
            sim = await start_audio_unit_sim(bus, unit_id=unit_id)
            started = sim.clock.now_ms()
            try:
                await stop.wait()
            finally:
                await sim.aclose()
            ended = sim.clock.now_ms()
            if log is not None:
                log.write_text("".join(json.dumps(asdict(s)) + "\n" for s in sim.segments))
            if wav is not None:
                start = max(started, ended - int(MAX_WAV_S * 1000))
                sim.render_wav(wav, zone=zone, start_ms=start, end_ms=ended)
            typer.echo(f"{unit_id}: {sim.stats['outputs']} outputs, {len(sim.segments)} segments")

        run_until_stopped(main, duration)
