"""A simulated audio broadcast unit on the store-local bus.

It applies each ``AudioOutput`` it receives (a stale ``seq`` is ignored), keeps a log
of what it played - one ``Segment`` per zone, layer, track and gain, from when it
started to when it stopped - and renders any time span of that log to a WAV file
(stdlib ``wave``): a sine tone per track id, at the segment's gain, music and voice
mixed. Tests assert what played when and at what level from the segments or the WAV.

Segments start at the output's ``ts`` (when the agent says it takes effect), so a
test on a ``ManualClock`` gets exact times regardless of bus latency. The log is a
bounded deque: a unit flooded with outputs forgets its oldest segments, never grows.
"""

from __future__ import annotations

import array
import asyncio
import hashlib
import logging
import math
import wave
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

from firmware_sim.busdevice import BusDeviceSim
from protocols import decode, encode, topics
from protocols.audio import (
    DEVICE_KIND,
    OUTPUT,
    PLAYING,
    STATUS,
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
# Tone amplitude at 0 dB: leaves headroom for music + voice mixed before clipping.
FULL_SCALE = 0.5


@dataclass(slots=True)
class Segment:
    zone: str
    layer: str  # "music" or "voice"
    track_id: str
    kind: str
    item: str
    start_ms: int
    gain_db: float
    track_started_ms: int  # where in the track it plays from (offset = t - this)
    end_ms: int | None = None  # None = still playing

    def covers(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms and (self.end_ms is None or t_ms < self.end_ms)


def tone_hz(track_id: str) -> float:
    """A stable tone per track id, 200-1000 Hz (under 8 kHz sampling's Nyquist)."""
    return 200.0 + int(hashlib.sha256(track_id.encode()).hexdigest()[:4], 16) % 800


class AudioUnitSim(BusDeviceSim):
    kind = DEVICE_KIND
    model = "sim-audio"
    down_type = OUTPUT

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
            # The same track from the same start at the same gain goes on; anything else
            # (another track, a restart of it, a gain change such as ducking) is a new segment.
            if layer is None or (layer.track_id, layer.started_ms, layer.gain_db) != (
                    seg.track_id, seg.track_started_ms, seg.gain_db):
                seg.end_ms = output.ts
                del self.current[key]
        for key, layer in wanted.items():
            if key not in self.current:
                seg = Segment(zone=key[0], layer=key[1], track_id=layer.track_id,
                              kind=layer.kind, item=layer.item, start_ms=output.ts,
                              gain_db=layer.gain_db, track_started_ms=layer.started_ms)
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

    def render_wav(self, path: Path, *, zone: str, start_ms: int, end_ms: int,
                   sample_rate: int = 8000) -> int:
        """Render [start, end) of one zone to a mono 16-bit WAV; returns frames written."""
        frames = max(0, (end_ms - start_ms) * sample_rate // 1000)
        mix = [0.0] * frames
        for seg in self.segments:
            if seg.zone != zone:
                continue
            lo = max(start_ms, seg.start_ms)
            hi = min(end_ms, seg.end_ms if seg.end_ms is not None else end_ms)
            if hi <= lo:
                continue
            amp = FULL_SCALE * 10 ** (seg.gain_db / 20)
            w = 2 * math.pi * tone_hz(seg.track_id) / sample_rate
            first = (lo - start_ms) * sample_rate // 1000
            last = (hi - start_ms) * sample_rate // 1000
            mix[first:last] = [m + amp * math.sin(w * i)
                               for i, m in zip(range(first, last), mix[first:last], strict=True)]
        peak = 32767
        pcm = array.array("h", [peak if s >= 1.0 else -peak if s <= -1.0 else int(s * peak)
                                for s in mix])
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(sample_rate)
            out.writeframes(pcm.tobytes())
        return frames


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
