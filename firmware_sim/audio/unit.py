"""A simulated audio broadcast unit on the store-local bus.

It applies each ``AudioOutput`` it receives (a stale ``seq`` is ignored), keeps a log
of what it played - one ``Segment`` per zone, layer, track and gain, from when it
started to when it stopped - and renders any time span of that log to PCM or a WAV
file: each segment plays the asset it names (a WAV, PCM 16-bit mono, that the driver
sent in ``AssetChunk``s, decoded with the stdlib ``wave``) from the segment's offset
into the track, at its gain, music and voice mixed. A segment whose asset the unit was
never sent renders as silence and is counted (``stats["missing_asset"]``), as a real
unit with no file would stay silent. Tests assert what played when and at what level
from the segments or the rendered samples (decision 0048).

Segments start at the output's ``ts`` (when the agent says it takes effect), so a
test on a ``ManualClock`` gets exact times regardless of bus latency. The log is a
bounded deque: a unit flooded with outputs forgets its oldest segments, never grows.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import logging
import wave
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_sim.busdevice import BusDeviceSim
from protocols import decode, encode, topics
from protocols.audio import (
    ASSET,
    DEVICE_KIND,
    OUTPUT,
    PLAYING,
    STATUS,
    AssetAck,
    AssetChunk,
    AudioOutput,
    Layer,
    UnitPlaying,
    UnitStatus,
)
from protocols.clock import Clock, SystemClock
from protocols.errors import ProtocolError
from protocols.ids import uuid7

logger = logging.getLogger(__name__)

MAX_OUTPUT_BYTES = 64 * 1024
MAX_CHUNK_BYTES = 64 * 1024


@dataclass(slots=True)
class Segment:
    zone: str
    layer: str  # "music" or "voice"
    track_id: str
    sha256: str
    kind: str
    item: str
    start_ms: int
    gain_db: float
    track_started_ms: int  # where in the track it plays from (offset = t - this)
    end_ms: int | None = None  # None = still playing

    def covers(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms and (self.end_ms is None or t_ms < self.end_ms)


@dataclass(frozen=True, slots=True)
class Pcm:
    """A decoded asset: samples as floats in [-1, 1) at ``rate`` Hz."""

    samples: np.ndarray
    rate: int


class UnsupportedAudio(ValueError):
    """An asset that is not a WAV of PCM 16-bit mono."""


def decode_wav(data: bytes) -> Pcm:
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise UnsupportedAudio(f"{w.getnchannels()} channel(s) of "
                                       f"{8 * w.getsampwidth()} bit; the unit plays 16-bit mono")
            frames = w.readframes(w.getnframes())
            rate = w.getframerate()
    except (wave.Error, EOFError) as err:
        raise UnsupportedAudio(f"not a WAV file: {err}") from err
    return Pcm(np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768.0, rate)


def encode_wav(samples: np.ndarray, *, rate: int) -> bytes:
    """A WAV file of PCM 16-bit mono from float samples in [-1, 1) (clipped)."""
    pcm = (np.clip(samples, -1.0, 32767 / 32768) * 32768).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def tone_wav(hz: float, seconds: float, *, rate: int = 8_000, amplitude: float = 0.5) -> bytes:
    """A recording that is one sine tone (the demo's and the benches' stand-in for
    music): tell recordings apart by their frequency."""
    t = np.arange(int(seconds * rate)) / rate
    return encode_wav(amplitude * np.sin(2 * np.pi * hz * t), rate=rate)


def write_wav(path: Path, samples: np.ndarray, *, rate: int) -> None:
    path.write_bytes(encode_wav(samples, rate=rate))


class AudioUnitSim(BusDeviceSim):
    kind = DEVICE_KIND
    model = "sim-audio"
    down_type = OUTPUT
    more_down_types = (ASSET,)

    def __init__(
        self,
        bus_url: str,
        *,
        unit_id: str,
        clock: Clock | None = None,
        status_interval_s: float = 10.0,
        max_segments: int = 10_000,
    ) -> None:
        super().__init__(bus_url, topics.check_id(unit_id, "unit id"))
        self.unit_id = self.device_id
        self.clock = clock or SystemClock()
        self.status_interval_ms = int(status_interval_s * 1000)
        self.segments: deque[Segment] = deque(maxlen=max_segments)
        self.current: dict[tuple[str, str], Segment] = {}  # (zone, layer) -> open segment
        self.seq = 0
        self.boot_id = uuid7(self.clock.now_ms())
        self.stats: Counter[str] = Counter()
        self._next_status_ms = self.clock.now_ms()
        self.applied = asyncio.Event()
        self.assets: dict[str, Pcm] = {}  # sha256 -> decoded, once complete and verified
        self._partial: dict[str, bytearray] = {}

    def now_ms(self) -> int:
        return self.clock.now_ms()

    async def step(self) -> None:
        """Heartbeat when due (by the injected clock)."""
        now = self.clock.now_ms()
        if now >= self._next_status_ms and self.connected:
            self._next_status_ms = now + self.status_interval_ms
            await self.publish_up(STATUS, encode(UnitStatus(boot_id=self.boot_id, ts=now)))
            self.stats["status"] += 1

    async def on_message(self, payload: bytes) -> None:
        if self.on_output(payload):
            playing = UnitPlaying(seq=self.seq, ts=self.clock.now_ms())
            await self.publish_up(PLAYING, encode(playing))

    async def on_down(self, type_: str, payload: bytes) -> None:
        ack = self.on_chunk(payload)
        if ack is not None:
            await self.publish_up(ASSET, encode(ack))

    # ---- assets -------------------------------------------------------------------------

    def on_chunk(self, payload: bytes) -> AssetAck | None:
        """Take one chunk if it is the next; the ack says what the unit holds."""
        try:
            chunk = decode(payload, AssetChunk, max_bytes=MAX_CHUNK_BYTES)
            data = base64.b64decode(chunk.data_b64, validate=True)
        except (ProtocolError, binascii.Error) as err:
            self.stats["bad_chunk"] += 1
            logger.debug("audio sim %s: bad chunk: %s", self.unit_id, err)
            return None
        sha = chunk.sha256
        if sha in self.assets:
            return AssetAck(sha256=sha, have=chunk.size, complete=True)
        held = self._partial.setdefault(sha, bytearray())
        if data and chunk.offset == len(held) and len(held) + len(data) <= chunk.size:
            held += data
            self.stats["chunks"] += 1
        elif data:
            self.stats["out_of_order_chunk"] += 1  # the ack tells the driver where to go on
        if len(held) < chunk.size:
            return AssetAck(sha256=sha, have=len(held))
        del self._partial[sha]
        if hashlib.sha256(held).hexdigest() != sha:
            self.stats["bad_asset"] += 1
            return AssetAck(sha256=sha, have=0, error="sha256_mismatch")
        try:
            self.assets[sha] = decode_wav(bytes(held))
        except UnsupportedAudio as err:
            self.stats["bad_asset"] += 1
            logger.warning("audio sim %s: asset %s refused: %s", self.unit_id, sha[:12], err)
            return AssetAck(sha256=sha, have=0, error="unsupported_format")
        self.stats["assets"] += 1
        return AssetAck(sha256=sha, have=chunk.size, complete=True)

    # ---- playback log ---------------------------------------------------------------------

    def on_output(self, payload: bytes) -> bool:
        """Apply one output message; False for garbage or a stale seq (counted)."""
        try:
            output = decode(payload, AudioOutput, max_bytes=MAX_OUTPUT_BYTES)
        except ProtocolError as err:
            self.stats["bad_output"] += 1
            logger.debug("audio sim %s: bad output: %s", self.unit_id, err)
            return False
        if output.seq <= self.seq:
            self.stats["stale_output"] += 1
            return False
        self.seq = output.seq
        wanted: dict[tuple[str, str], Layer] = {}
        for zone in output.zones:
            if zone.music is not None:
                wanted[(zone.zone, "music")] = zone.music
            if zone.voice is not None:
                wanted[(zone.zone, "voice")] = zone.voice
        for key in list(self.current):
            layer = wanted.get(key)
            seg = self.current[key]
            # The same recording of the same track from the same start at the same gain
            # goes on; anything else (another track, a new schedule's recording under the
            # same track id, a restart, a gain change such as ducking) is a new segment.
            if layer is None or (layer.track_id, layer.sha256, layer.started_ms,
                                 layer.gain_db) != (seg.track_id, seg.sha256,
                                                    seg.track_started_ms, seg.gain_db):
                seg.end_ms = output.ts
                del self.current[key]
        for key, layer in wanted.items():
            if key not in self.current:
                seg = Segment(zone=key[0], layer=key[1], track_id=layer.track_id,
                              sha256=layer.sha256, kind=layer.kind, item=layer.item,
                              start_ms=output.ts, gain_db=layer.gain_db,
                              track_started_ms=layer.started_ms)
                self.current[key] = seg
                self.segments.append(seg)
        self.stats["outputs"] += 1
        self.applied.set()
        return True

    def played(self, zone: str, layer: str, t_ms: int) -> Segment | None:
        """What played on (zone, layer) at time t."""
        for seg in reversed(self.segments):
            if seg.zone == zone and seg.layer == layer and seg.covers(t_ms):
                return seg
        return None

    def render(self, *, zone: str, start_ms: int, end_ms: int, rate: int = 8000) -> np.ndarray:
        """Mix [start, end) of one zone: each segment's asset from its track offset."""
        frames = max(0, (end_ms - start_ms) * rate // 1000)
        mix = np.zeros(frames)
        for seg in self.segments:
            if seg.zone != zone:
                continue
            lo = max(start_ms, seg.start_ms)
            hi = min(end_ms, seg.end_ms if seg.end_ms is not None else end_ms)
            if hi <= lo:
                continue
            pcm = self.assets.get(seg.sha256)
            if pcm is None:
                self.stats["missing_asset"] += 1
                continue
            first = (lo - start_ms) * rate // 1000
            last = (hi - start_ms) * rate // 1000
            # sample i of the mix is at start + i/rate, into the track at that minus its
            # start; in integers (a float floor jitters by a sample), nearest-below
            into = (start_ms - seg.track_started_ms) * rate + np.arange(first, last,
                                                                        dtype=np.int64) * 1000
            index = into * pcm.rate // (1000 * rate)
            inside = (index >= 0) & (index < len(pcm.samples))
            part = np.zeros(last - first)
            part[inside] = pcm.samples[index[inside]]
            mix[first:last] += part * 10 ** (seg.gain_db / 20)
        return mix

    def render_wav(self, path: Path, *, zone: str, start_ms: int, end_ms: int,
                   sample_rate: int = 8000) -> int:
        """Render [start, end) of one zone to a mono 16-bit WAV; returns frames written."""
        mix = self.render(zone=zone, start_ms=start_ms, end_ms=end_ms, rate=sample_rate)
        write_wav(path, mix, rate=sample_rate)
        return len(mix)


async def start_audio_unit_sim(
    bus_url: str,
    *,
    unit_id: str,
    clock: Clock | None = None,
    status_interval_s: float = 10.0,
    max_segments: int = 10_000,
    autostep: bool = True,
    tick_s: float = 1.0,
) -> AudioUnitSim:
    """Connect a simulated audio unit to the bus and start it; ``await sim.aclose()``."""
    sim = AudioUnitSim(bus_url, unit_id=unit_id, clock=clock,
                       status_interval_s=status_interval_s, max_segments=max_segments)
    await sim.start(autostep=autostep, tick_s=tick_s)
    return sim
