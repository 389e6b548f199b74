"""The audio driver against FakeContext: schedule in, retained outputs out, offline
start from the cache, presence, missing assets and bad input."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from edge_agent.drivers.audio import ASSET_MISSING, NO_SCHEDULE, AudioDriver
from edge_agent.drivers.base import DRIVERS, CommandRejected, DeviceConfig, DriverError
from edge_agent.drivers.testing import FakeContext
from protocols import decode, encode
from protocols.audio import AudioOutput, PresenceReport, UnitPlaying
from protocols.clock import ManualClock
from tests.edge_agent.drivers.audio.fixtures import TRACK_MS, asset, schedule_doc

TOPIC = "store/audio/U1/down/output"


def make(ctx: FakeContext, cache: Path, **options: object) -> AudioDriver:
    drv = AudioDriver(DeviceConfig(device_id="U1", family="audio",
                                   options={"cache_dir": str(cache), **options}), ctx)
    drv.subscribe()
    return drv


async def load(drv: AudioDriver, *, skip: tuple[str, ...] = ()) -> dict[str, object]:
    for track in TRACK_MS:
        if track not in skip:
            b64 = base64.b64encode(asset(track)).decode()
            await drv.handle_command("audio_asset", {"data_b64": b64})
    return await drv.handle_command("audio_schedule", {"schedule": schedule_doc()})


def outputs(ctx: FakeContext) -> list[AudioOutput]:
    return [decode(p, AudioOutput) for t, p, _, _ in ctx.published if t == TOPIC]


@pytest.fixture
def ctx() -> FakeContext:
    clock = ManualClock()
    clock.advance(8 * 3600 + 5)  # 08:00:05, during the opening announcement
    return FakeContext(clock=clock)


async def test_schedule_to_retained_outputs(ctx: FakeContext, tmp_path: Path) -> None:
    assert DRIVERS["audio"] is AudioDriver
    drv = make(ctx, tmp_path)
    assert drv.health().alarms == (NO_SCHEDULE,)
    result = await load(drv)
    assert result == {"applied": True, "version": 1, "missing_assets": []}
    wait_s = await drv.tick()
    (first,) = outputs(ctx)
    assert ctx.published[0][3] is True  # retained
    floor = next(z for z in first.zones if z.zone == "floor")
    assert floor.voice is not None and floor.voice.item == "opening"
    assert floor.music is not None and floor.music.gain_db == -18.0
    assert wait_s == pytest.approx(1.0)  # tick_s bounds the sleep
    await drv.tick()
    assert len(outputs(ctx)) == 1  # unchanged output is not republished
    assert isinstance(ctx.clock, ManualClock)
    ctx.clock.advance(30)  # announcement over: music back up
    await drv.tick()
    second = outputs(ctx)[-1]
    assert second.seq == 2
    music = next(z for z in second.zones if z.zone == "floor").music
    assert music is not None and music.gain_db == -6.0
    # the unit acknowledges and reports in
    await ctx.deliver_local("audio", "U1", "playing", encode(UnitPlaying(seq=2, ts=0)))
    assert drv.health().online and drv.health().details["acked_seq"] == 2
    old = await drv.handle_command("audio_schedule", {"schedule": schedule_doc(version=1)})
    assert old["applied"] is False


async def test_restart_without_cloud_plays_from_the_cache(ctx: FakeContext, tmp_path: Path) -> None:
    drv = make(ctx, tmp_path)
    await load(drv)
    await drv.tick()
    before = outputs(ctx)[-1].zones
    # a fresh agent process: nothing but the cache directory
    ctx2 = FakeContext(clock=ctx.clock)
    drv2 = make(ctx2, tmp_path)
    await drv2.tick()
    (out,) = outputs(ctx2)
    assert out.zones == before
    assert drv2.health().alarms == ()


async def test_missing_or_corrupt_assets_are_not_played(ctx: FakeContext, tmp_path: Path) -> None:
    drv = make(ctx, tmp_path)
    result = await load(drv, skip=("open",))
    assert result["missing_assets"] == ["open"]
    assert drv.health().alarms == (ASSET_MISSING,)
    await drv.tick()
    floor = next(z for z in outputs(ctx)[-1].zones if z.zone == "floor")
    assert floor.voice is None  # no announcement without its asset
    await drv.handle_command("audio_asset", {"data_b64": base64.b64encode(asset("open")).decode()})
    assert drv.health().alarms == ()
    await drv.tick()
    floor = next(z for z in outputs(ctx)[-1].zones if z.zone == "floor")
    assert floor.voice is not None and floor.voice.track_id == "open"
    # a flipped bit on disk makes the asset missing again at the next load
    path = drv.cache.path(floor.voice.sha256)
    path.write_bytes(b"X" + path.read_bytes()[1:])
    drv3 = make(FakeContext(clock=ctx.clock), tmp_path)
    await drv3.tick()
    assert drv3.missing == ["open"]


async def test_presence_triggers_the_aisle_spot(ctx: FakeContext, tmp_path: Path) -> None:
    drv = make(ctx, tmp_path, zones=["aisle"])
    await load(drv)
    assert isinstance(ctx.clock, ManualClock)
    ctx.clock.advance(600)
    await drv.tick()
    assert outputs(ctx)[-1].zones[0].voice is None
    await ctx.deliver_local("presence", "P1", "presence",
                            encode(PresenceReport(present=True, ts=ctx.clock.now_ms())))
    await drv.tick()
    (aisle,) = outputs(ctx)[-1].zones
    assert aisle.zone == "aisle" and aisle.voice is not None and aisle.voice.item == "near"
    assert aisle.music is not None and aisle.music.gain_db == -3.0 - 12.0


async def test_bad_input_is_rejected_and_counted(ctx: FakeContext, tmp_path: Path) -> None:
    with pytest.raises(DriverError):
        AudioDriver(DeviceConfig(device_id="U1", family="audio"), ctx)  # no cache dir
    drv = make(ctx, tmp_path, max_msgs_per_s=5)
    with pytest.raises(CommandRejected, match="unknown track"):
        await drv.handle_command("audio_schedule", {"schedule": schedule_doc(
            announcements=[{"name": "x", "at": "08:00", "track_id": "nope"}])})
    with pytest.raises(CommandRejected, match="timezone"):
        await drv.handle_command("audio_schedule",
                                 {"schedule": schedule_doc(timezone="Mars/Olympus")})
    with pytest.raises(CommandRejected, match="base64"):
        await drv.handle_command("audio_asset", {"data_b64": "***"})
    await load(drv)
    for payload in (b"nope", b"{}", b"x" * 10_000):
        await ctx.deliver_local("audio", "U1", "playing", payload)
        await ctx.deliver_local("presence", "P1", "presence", payload)
    for _ in range(100):
        await ctx.deliver_local("audio", "U1", "status", b"{}")
    get = ctx.registry.get_sample_value
    reasons = {r: get("storefleet_audio_bad_messages_total", {"device_id": "U1", "reason": r})
               for r in ("not_json", "missing_field", "too_large", "flood")}
    assert reasons["flood"] and reasons["flood"] >= 80
    assert sum(v or 0 for v in reasons.values()) == 106
    assert drv.health().last_seen_ms is None  # garbage does not count as the unit being alive
