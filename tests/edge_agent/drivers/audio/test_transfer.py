"""Assets to the unit in acknowledged chunks (decision 0048): a lossy link goes back to
the unit's offset, a transfer resumes from what the unit holds, a refused or unanswered
asset fails typed and is counted by the driver; the unit decodes the WAV it was sent."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path

import numpy as np
import pytest

from edge_agent.drivers.audio import AudioDriver
from edge_agent.drivers.audio.transfer import AssetSender, AssetTransferError
from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.testing import FakeContext
from firmware_sim.audio import AudioUnitSim, decode_wav
from protocols import decode, encode
from protocols.audio import AssetAck, AssetChunk
from protocols.clock import ManualClock
from tests.edge_agent.drivers.audio.fixtures import RATE, TRACK_MS, asset, schedule_doc


class Link:
    """The bus between a sender and an in-process unit: drops every ``drop_every``-th
    chunk, answers each delivered one on the next loop turn as the broker would."""

    def __init__(self, unit: AudioUnitSim, *, drop_every: int = 0, mute: bool = False) -> None:
        self.unit, self.drop_every, self.mute = unit, drop_every, mute
        self.sender: AssetSender | None = None
        self.count = 0

    async def publish(self, payload: bytes) -> None:
        self.count += 1
        if self.mute or (self.drop_every and self.count % self.drop_every == 0):
            return
        ack = self.unit.on_chunk(payload)
        if ack is not None and self.sender is not None:
            asyncio.get_running_loop().call_soon(self.sender.on_ack, ack)


def pair(**link: object) -> tuple[AudioUnitSim, Link, AssetSender]:
    unit = AudioUnitSim("mqtt://127.0.0.1:1", unit_id="U1", clock=ManualClock())
    wire = Link(unit, **link)  # type: ignore[arg-type]
    wire.sender = AssetSender("U1", wire.publish, chunk_size=4096, window=4,
                              ack_timeout_s=0.05, max_stalls=3)
    return unit, wire, wire.sender


async def test_a_lossy_link_still_delivers_the_wav() -> None:
    data = asset("open")  # 30 s at 4 kHz: 240 KB, 59 chunks
    sha = hashlib.sha256(data).hexdigest()
    unit, _, sender = pair(drop_every=7)
    sent = await sender.send(sha, data)
    assert sent > len(data)  # chunks after a lost one went again
    pcm = unit.assets[sha]
    assert pcm.rate == RATE and len(pcm.samples) == TRACK_MS["open"] * RATE // 1000
    assert np.array_equal(pcm.samples, decode_wav(data).samples)
    assert unit.stats["out_of_order_chunk"] > 0
    assert await sender.send(sha, data) == 0  # the unit has it: nothing goes out


async def test_a_transfer_resumes_from_what_the_unit_holds() -> None:
    data = asset("near")
    sha = hashlib.sha256(data).hexdigest()
    unit, _, sender = pair()
    half = 12 * 4096
    for offset in range(0, half, 4096):  # an earlier, interrupted transfer
        unit.on_chunk(encode(AssetChunk(sha256=sha, size=len(data), offset=offset,
                                        data_b64=base64.b64encode(
                                            data[offset:offset + 4096]).decode())))
    assert await sender.send(sha, data) == len(data) - half
    assert sha in unit.assets


async def test_refused_and_unanswered_assets_fail_typed() -> None:
    unit, _, sender = pair()
    junk = b"not a wav at all" * 100
    with pytest.raises(AssetTransferError) as err:
        await sender.send(hashlib.sha256(junk).hexdigest(), junk)
    assert err.value.reason == "unsupported_format" and unit.stats["bad_asset"] == 1
    _, _, mute = pair(mute=True)
    with pytest.raises(AssetTransferError, match="stalled"):
        await mute.send(hashlib.sha256(junk).hexdigest(), junk)


async def test_the_driver_counts_what_did_not_reach_the_unit(tmp_path: Path) -> None:
    ctx = FakeContext(clock=ManualClock())
    drv = AudioDriver(DeviceConfig(device_id="U1", family="audio",
                                   options={"cache_dir": str(tmp_path)}), ctx)
    for track in TRACK_MS:
        await drv.put_asset(asset(track))
    await drv.set_schedule(schedule_doc())
    unit, _, sender = pair(drop_every=11)
    drv.sender = sender
    assert drv.scheduler is not None
    refused = drv.scheduler.schedule.tracks["m2"].sha256

    original = unit.on_chunk

    def refusing(payload: bytes) -> AssetAck | None:
        chunk = decode(payload, AssetChunk)
        if chunk.sha256 == refused and chunk.offset == 4096:  # corrupted on its way
            data = bytes(b ^ 0xFF for b in base64.b64decode(chunk.data_b64))
            payload = encode(chunk.model_copy(
                update={"data_b64": base64.b64encode(data).decode()}))
        return original(payload)

    unit.on_chunk = refusing  # type: ignore[method-assign]
    assert await drv.sync_assets() == len(TRACK_MS) - 1
    get = ctx.registry.get_sample_value
    assert get("storefleet_audio_asset_failures_total",
               {"device_id": "U1", "reason": "sha256_mismatch"}) == 1
    assert (get("storefleet_audio_asset_bytes_sent_total", {"device_id": "U1"}) or 0) > 0
    assert drv.health().details["assets_on_unit"] == len(TRACK_MS) - 1
