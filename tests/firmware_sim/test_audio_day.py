"""The rendered audio of simulated days matches the schedule HQ authored (decision 0048).

The chain's schedule with a regional override and a holiday is compiled for one store
by the cloud's compiler, applied by the audio driver, whose WAV assets reach the
simulated unit in chunks over a real Mosquitto; the unit renders what it played, and
the samples are checked: announcements start at their times (to the sample where the
zone was silent, to a 40 ms block over music), music is ducked under them by the
schedule's gain, the presence spot plays only after a shopper was near, and the
holiday plays its own daypart and nothing else.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cloud.audio import AudioScheduleSpec, compile_schedule
from edge_agent.drivers.audio import AudioDriver
from edge_agent.drivers.base import DeviceConfig
from firmware_sim.audio import AudioUnitSim, start_audio_unit_sim
from protocols import encode
from protocols.audio import PresenceReport
from protocols.clock import ManualClock
from tests.edge_agent.drivers.audio.fixtures import (
    AMPLITUDE,
    DAY,
    RATE,
    TONE_HZ,
    TRACK_MS,
    asset,
    hhmm,
    schedule_doc,
)
from tests.edge_agent.drivers.esl.mqtt_context import MqttContext
from tests.firmware_sim.test_audio_sim import run_until, settle
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

PER_S = 25  # blocks a second
BLOCK = RATE // PER_S  # 40 ms: a whole number of periods of every tone, so they separate
SILENT = 1e-6  # a tone's level in a block where it does not play (rounding leaves 1e-16)


def authored() -> AudioScheduleSpec:
    """The fixture schedule as HQ authors it, with New Year's day and a northern lunch."""
    chain = schedule_doc()
    del chain["version"]
    chain["dayparts"].append({"name": "holiday", "start": "10:00", "end": "16:00",
                              "playlist": ["xmas"], "holiday": True})
    chain["holidays"] = ["2026-01-01"]  # the ManualClock's first day (a Thursday)
    chain["overrides"] = [{"name": "north-lunch", "regions": ["north"], "announcements": [
        {"name": "lunch", "at": "12:30", "track_id": "open", "zones": ["floor"]}]}]
    return AudioScheduleSpec.model_validate(chain)


def level(mix: np.ndarray, track: str) -> np.ndarray:
    """Amplitude of the track's tone in each 40 ms block (phase-free projection)."""
    blocks = mix[:len(mix) // BLOCK * BLOCK].reshape(-1, BLOCK)
    t = np.arange(BLOCK) / RATE
    w = 2 * np.pi * TONE_HZ[track] * t
    return 2 * np.hypot(blocks @ np.sin(w), blocks @ np.cos(w)) / BLOCK


def at(gain_db: float) -> float:
    return AMPLITUDE * 10 ** (gain_db / 20)


async def play_days(mosquitto: Mosquitto, tmp_path: Path, doc: dict[str, Any],
                    ) -> AudioUnitSim:
    clock = ManualClock()  # 2026-01-01T00:00Z; the store is in UTC
    async with MqttContext(clock=clock, host=mosquitto.host, port=mosquitto.port) as ctx:
        unit = await start_audio_unit_sim(mosquitto.url, unit_id="U1", clock=clock,
                                          autostep=False)
        try:
            drv = AudioDriver(DeviceConfig(device_id="U1", family="audio",
                                           options={"cache_dir": str(tmp_path)}), ctx)
            drv.subscribe()
            for track in TRACK_MS:
                await drv.put_asset(asset(track))
            assert (await drv.set_schedule(doc))["applied"]
            assert await drv.sync_assets() == len(TRACK_MS)
            assert unit.stats["assets"] == len(TRACK_MS) and not unit.stats["bad_asset"]
            assert await drv.sync_assets() == 0  # the unit has them: nothing sent again
            # the holiday, with nobody near the aisle; then a Friday, a shopper at 10:00
            await run_until(clock, drv, unit, hhmm(17))
            clock.advance((DAY + hhmm(7, 55) - clock.now_ms()) / 1000)
            await run_until(clock, drv, unit, DAY + hhmm(10))
            report = PresenceReport(present=True, ts=clock.now_ms())
            await ctx.publish_local("store/presence/P1/up/presence", encode(report))
            await ctx.wait_delivered("presence/presence", 1)
            await run_until(clock, drv, unit, DAY + hhmm(23))
            await settle(unit, drv)
        finally:
            await unit.aclose()
    return unit


async def test_rendered_days_match_the_authored_schedule(mosquitto: Mosquitto,
                                                         tmp_path: Path) -> None:
    doc = compile_schedule(authored(), version=1, store_id="s1", regions=["north"],
                           since=dt.date(2026, 1, 1))
    unit = await play_days(mosquitto, tmp_path, doc)

    def render(zone: str, start_ms: int, seconds: float) -> np.ndarray:
        return unit.render(zone=zone, start_ms=start_ms, end_ms=start_ms + int(seconds * 1000),
                           rate=RATE)

    friday = DAY
    # Opening at 08:00 on the Friday: silence, then the announcement to the sample
    mix = render("floor", friday + hhmm(7, 59, 59), 3)
    # one second in, 08:00:00.000 (both tones start at phase 0: the first sample is 0)
    assert not mix[:RATE].any() and mix[RATE + 1] != 0
    opening = level(mix[RATE:], "open")
    music = level(mix[RATE:], "m1")
    # voice at the zone volume (-6 dB), music under it ducked by duck_db (-12 dB)
    assert opening == pytest.approx(at(-6), rel=0.01)
    assert music == pytest.approx(at(-18), rel=0.01)
    # Closing at 21:45 over the evening music: onset within one 40 ms block
    mix = render("floor", friday + hhmm(21, 44, 59), 47)
    closing = level(mix, "close")
    onset = int(np.flatnonzero(closing > at(-6) / 2)[0])
    assert abs(onset * BLOCK - RATE) <= BLOCK
    evening = level(mix, "e1")
    assert evening[:onset - 1] == pytest.approx(at(-8), rel=0.01)  # zone -6, daypart -2
    assert evening[onset + 1:onset + 45 * PER_S - 1] == pytest.approx(at(-20), rel=0.01)
    assert evening[-25:] == pytest.approx(at(-8), rel=0.01)  # 45 s later: back up
    # The region's override: lunch at 12:30 on the Friday
    lunch = level(render("floor", friday + hhmm(12, 30), 5), "open")
    assert lunch == pytest.approx(at(-6), rel=0.01)

    # Presence: the aisle spot only after the shopper at 10:00 on the Friday
    near = [(s.zone, s.start_ms) for s in unit.segments if s.item == "near"]
    assert near == [("aisle", friday + hhmm(10))]
    spot = level(render("aisle", friday + hhmm(10), 16), "near")
    assert spot[:15 * PER_S] == pytest.approx(at(-3), rel=0.01)
    assert spot[15 * PER_S + 1:].max() < SILENT
    for quiet in (hhmm(10), friday + hhmm(9, 59), friday + hhmm(11)):
        assert level(render("aisle", quiet, 10), "near").max() < SILENT

    # The holiday: its own daypart only - no opening, no promotions, no lunch
    assert not render("floor", hhmm(8), 30).any()
    assert level(render("floor", hhmm(12, 30, 10), 2), "xmas") == pytest.approx(at(-6),
                                                                                rel=0.01)
    assert level(render("floor", hhmm(12, 30, 10), 2), "open").max() < SILENT
    assert {s.item for s in unit.segments if s.start_ms < hhmm(24)} == {"holiday"}
    assert not unit.stats["missing_asset"]
