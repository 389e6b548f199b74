"""The audio driver drives the simulated unit over a real Mosquitto: a store day in
seconds, asserted from the unit's segment log and its rendered WAV; faults contained."""

from __future__ import annotations

import array
import asyncio
import math
import time
import wave
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.drivers.audio import AudioDriver
from edge_agent.drivers.base import DeviceConfig
from firmware_sim.audio import AudioUnitSim, start_audio_unit_sim
from protocols import encode
from protocols.audio import PresenceReport
from protocols.clock import ManualClock
from tests.edge_agent.drivers.audio.fixtures import TRACK_MS, asset, hhmm, schedule_doc
from tests.edge_agent.drivers.esl.mqtt_context import MqttContext
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


async def make_driver(ctx: MqttContext, cache: Path, *, unit: bool = True) -> AudioDriver:
    drv = AudioDriver(DeviceConfig(device_id="U1", family="audio",
                                   options={"cache_dir": str(cache)}), ctx)
    drv.subscribe()
    for track in TRACK_MS:
        await drv.put_asset(asset(track))
    await drv.set_schedule(schedule_doc())
    if unit:
        await drv.sync_assets()  # the unit gets the WAVs it will play, in chunks over the bus
    return drv


async def settle(unit: AudioUnitSim, drv: AudioDriver) -> None:
    async def applied() -> None:
        while unit.seq < drv.seq:  # noqa: ASYNC110 - polls a counter
            await asyncio.sleep(0.002)

    await asyncio.wait_for(applied(), 5)


async def run_until(clock: ManualClock, drv: AudioDriver, unit: AudioUnitSim, end_ms: int,
                    ) -> int:
    """Jump from one schedule change to the next (as the driver's run loop would)."""
    steps = 0
    while clock.now_ms() < end_ms:
        await drv.tick()
        await settle(unit, drv)
        assert drv.scheduler is not None
        nxt = min(drv.scheduler.next_change_ms(clock.now_ms()), end_ms)
        clock.advance((nxt - clock.now_ms()) / 1000)
        steps += 1
    await drv.tick()
    await settle(unit, drv)
    return steps


def rms(path: Path, start_s: float, end_s: float) -> float:
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        pcm = array.array("h", w.readframes(w.getnframes()))
    window = pcm[int(start_s * rate):int(end_s * rate)]
    return math.sqrt(sum(x * x for x in window) / max(1, len(window))) / 32767


async def test_a_store_day_plays_as_scheduled(mosquitto: Mosquitto, tmp_path: Path) -> None:
    clock = ManualClock()
    async with MqttContext(clock=clock, host=mosquitto.host, port=mosquitto.port) as ctx:
        unit = await start_audio_unit_sim(mosquitto.url, unit_id="U1", clock=clock,
                                          autostep=False)
        try:
            drv = await make_driver(ctx, tmp_path / "cache")
            started = time.monotonic()
            steps = await run_until(clock, drv, unit, hhmm(10))
            # a shopper walks up to the aisle at 10:00
            await unit.step()
            report = PresenceReport(present=True, ts=clock.now_ms())
            await ctx.publish_local("store/presence/P1/up/presence", encode(report))
            await ctx.wait_delivered("presence/presence", 1)
            steps += await run_until(clock, drv, unit, hhmm(23, 59))
            elapsed = time.monotonic() - started
        finally:
            await unit.aclose()
    assert steps < 1000 and elapsed < 60, (steps, elapsed)  # ~5 s idle; CI is shared
    # nothing before opening, the opening announcement over ducked music
    assert unit.played("floor", "music", hhmm(7, 59)) is None
    opening = unit.played("floor", "voice", hhmm(8) + 1_000)
    assert opening is not None and opening.item == "opening"
    assert (opening.start_ms, opening.end_ms) == (hhmm(8), hhmm(8) + 30_000)
    ducked = unit.played("floor", "music", hhmm(8) + 1_000)
    assert ducked is not None and ducked.gain_db == -18.0 and ducked.end_ms == hhmm(8) + 30_000
    full = unit.played("floor", "music", hhmm(8) + 31_000)
    assert full is not None and full.gain_db == -6.0 and full.track_id == "m1"
    # the 15-minute promotion on the floor, the presence spot only in the aisle
    promo = [s for s in unit.segments if s.item == "promo"]
    assert len(promo) == 8 * 4  # 09:00, 09:15 .. 16:45; none at 17:00, the window end
    assert all(s.zone == "floor" and s.end_ms == s.start_ms + 20_000 for s in promo)
    near = [s for s in unit.segments if s.item == "near"]
    assert [(s.zone, s.start_ms, s.end_ms) for s in near] == [
        ("aisle", hhmm(10), hhmm(10) + 15_000)]
    closing = unit.played("floor", "voice", hhmm(21, 45) + 1_000)
    assert closing is not None and closing.item == "closing"
    assert unit.played("floor", "music", hhmm(22) + 1) is None  # closed, silent
    assert unit.played("aisle", "music", hhmm(18) + 1) is None  # evening music is floor only

    # the WAV of 07:59:55-08:00:35 on the floor: silence, voice + ducked music, music
    wav = tmp_path / "opening.wav"
    # 4 kHz sampling: every tone (200-1000 Hz) is below Nyquist, and the test stays quick
    unit.render_wav(wav, zone="floor", start_ms=hhmm(7, 59) + 55_000, end_ms=hhmm(8) + 35_000,
                    sample_rate=4000)
    silent, announced, music = rms(wav, 0, 5), rms(wav, 6, 34), rms(wav, 35.5, 40)
    half_sine = 0.5 / math.sqrt(2)
    assert silent == 0.0
    assert music == pytest.approx(half_sine * 10 ** (-6 / 20), rel=0.02)
    voice_and_ducked = math.hypot(10 ** (-6 / 20), 10 ** (-18 / 20)) * half_sine
    assert announced == pytest.approx(voice_and_ducked, rel=0.05)


async def test_unit_reconnect_and_garbage_and_flood(mosquitto: Mosquitto, tmp_path: Path) -> None:
    clock = ManualClock()
    clock.advance(9 * 3600)
    async with MqttContext(clock=clock, host=mosquitto.host, port=mosquitto.port) as ctx:
        drv = await make_driver(ctx, tmp_path / "cache", unit=False)
        await drv.tick()  # published (retained) while no unit is connected
        unit = await start_audio_unit_sim(mosquitto.url, unit_id="U1", clock=clock,
                                          autostep=False, max_segments=50)
        try:
            await settle(unit, drv)  # the retained output reached the late unit
            assert unit.played("floor", "music", clock.now_ms()) is not None
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as rogue:
                for i in range(200):
                    await rogue.publish("store/audio/U1/down/output", b"\x00" * (i % 7 + 1))
                    await rogue.publish("store/audio/U1/up/playing", b"garbage")
                    await rogue.publish("store/presence/P1/up/presence", b"[]")
            await ctx.wait_delivered("audio/playing", 200)

            async def drained() -> None:
                while unit.stats["bad_output"] < 200:  # noqa: ASYNC110 - polls a counter
                    await asyncio.sleep(0.005)

            await asyncio.wait_for(drained(), 10)
            # the driver keeps going and the unit keeps following it; its log stays bounded
            await run_until(clock, drv, unit, hhmm(17))
            assert len(unit.segments) == 50
            promo = unit.played("floor", "voice", hhmm(16, 45) + 1_000)
            assert promo is not None and promo.item == "promo"
            bad = sum(ctx.registry.get_sample_value("storefleet_audio_bad_messages_total",
                                                    {"device_id": "U1", "reason": r}) or 0
                      for r in ("not_json", "invalid_field", "flood"))
            assert bad == 400
        finally:
            await unit.aclose()
        # reconnect: a new unit process gets the current output and nothing else
        unit = await start_audio_unit_sim(mosquitto.url, unit_id="U1", clock=clock,
                                          autostep=False)
        try:
            await settle(unit, drv)
            assert unit.stats["outputs"] == 1
        finally:
            await unit.aclose()


def test_a_new_recording_under_the_same_track_id_plays_at_once() -> None:
    """A new schedule may give a track id another recording: the unit plays the new one
    from that output on, not the old one until the track's loop comes round."""
    from protocols.audio import AudioOutput, Layer, ZoneOutput

    unit = AudioUnitSim("mqtt://127.0.0.1:1", unit_id="U1")  # never connected

    def output(seq: int, ts: int, sha: str) -> bytes:
        music = Layer(track_id="m1", sha256=sha, kind="music", item="day", started_ms=1_000,
                      gain_db=-6.0)
        return encode(AudioOutput(seq=seq, ts=ts, zones=[ZoneOutput(zone="floor",
                                                                    music=music)]))

    old, new = "a" * 64, "b" * 64
    assert unit.on_output(output(1, 2_000, old))
    assert unit.on_output(output(2, 5_000, new))
    assert unit.current[("floor", "music")].sha256 == new
    assert [(s.sha256, s.start_ms, s.end_ms) for s in unit.segments] == [
        (old, 2_000, 5_000), (new, 5_000, None)]
