"""The store's audio schedule as a function of time: pure, no I/O, Clock-driven.

``Scheduler.output(now_ms)`` says, per zone, which music track plays (from the
daypart's playlist, looping, position derived from the time alone) and which voice
item plays over it (fixed-time announcements, interval spots, presence-triggered
spots; the highest priority wins, announcements before spots on a tie). Music under a
voice item is ducked by ``duck_db``; every layer gets its zone's ``volume_db``.

Each item plays on its ``days`` (ISO weekdays) of the local date its window starts
on; on a date in the schedule's ``holidays`` only items marked ``holiday`` play.

The only state is when each presence spot last started (``on_presence``): a presence
spot plays when a shopper is near and stays silent otherwise, and not again before
its ``cooldown_s``. ``next_change_ms`` bounds when the output can next change, so a
day is simulated in a few hundred steps instead of 86,400.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from protocols.audio import (
    Announcement,
    AudioSchedule,
    Daypart,
    Layer,
    Spot,
    ZoneOutput,
    hhmm_seconds,
)

DAY_MS = 86_400_000
# Nothing scheduled can be further away than a day; also the step when idle.
MAX_STEP_MS = DAY_MS


@dataclass(frozen=True, slots=True)
class _Voice:
    rank: tuple[int, int, str]  # (priority, announcement before spot, name) - max wins
    layer: Layer


def _applies(zones: list[str] | None, zone: str) -> bool:
    return zones is None or zone in zones


class Scheduler:
    def __init__(self, schedule: AudioSchedule, *, available: Iterable[str] | None = None) -> None:
        """``available``: track ids whose asset is in the local cache (None = all)."""
        self.schedule = schedule
        self.tz = ZoneInfo(schedule.timezone)  # ZoneInfoNotFoundError for a bad name
        ok = set(schedule.tracks) if available is None else set(available)
        self.playable = {t for t in schedule.tracks if t in ok}
        self._presence_started: dict[tuple[str, str], int] = {}  # (spot, zone) -> ms
        self.holidays = frozenset(schedule.holidays)

    # ---- time of day -------------------------------------------------------------------

    def _midnight_ms(self, now_ms: int) -> int:
        local = dt.datetime.fromtimestamp(now_ms / 1000, tz=self.tz)
        midnight = dt.datetime.combine(local.date(), dt.time(), tzinfo=self.tz)
        return int(midnight.timestamp() * 1000)

    def _window(self, midnight: int, start: str | None, end: str | None) -> tuple[int, int]:
        lo = midnight + (hhmm_seconds(start) * 1000 if start else 0)
        hi = midnight + (hhmm_seconds(end) * 1000 if end else DAY_MS)
        if hi <= lo:  # wraps past midnight, e.g. 22:00-02:00
            hi += DAY_MS
        return lo, hi

    def _plays_on(self, item: Daypart | Announcement | Spot, base_ms: int) -> bool:
        """Does ``item`` play on the local day starting at ``base_ms`` (a midnight)?"""
        # Noon of that day: a midnight derived by subtracting 24 h is off by an hour
        # across a DST change; noon is always inside the right date.
        day = dt.datetime.fromtimestamp(base_ms / 1000 + 43_200, tz=self.tz).date()
        if (day.isoformat() in self.holidays) != item.holiday:
            return False
        return item.days is None or day.isoweekday() in item.days

    # ---- presence -------------------------------------------------------------------------

    def on_presence(self, sensor_id: str, *, present: bool, now_ms: int) -> list[str]:
        """A sensor reported; returns the presence spots started (as 'spot@zone')."""
        if not present:
            return []
        started: list[str] = []
        for zone_id, zone in self.schedule.zones.items():
            if sensor_id not in zone.presence_sensors:
                continue
            for spot in self.schedule.spots:
                if spot.trigger != "presence" or not _applies(spot.zones, zone_id):
                    continue
                if spot.track_id not in self.playable or not self._in_window(spot, now_ms):
                    continue
                last = self._presence_started.get((spot.name, zone_id))
                duration = self.schedule.tracks[spot.track_id].duration_ms
                if last is not None and now_ms < last + duration + spot.cooldown_s * 1000:
                    continue
                self._presence_started[(spot.name, zone_id)] = now_ms
                started.append(f"{spot.name}@{zone_id}")
        return started

    def _in_window(self, spot: Spot, now_ms: int) -> bool:
        midnight = self._midnight_ms(now_ms)
        for base in (midnight - DAY_MS, midnight):  # a window wrapping midnight from yesterday
            lo, hi = self._window(base, spot.start, spot.end)
            if lo <= now_ms < hi and self._plays_on(spot, base):
                return True
        return False

    # ---- output ----------------------------------------------------------------------------

    def output(self, now_ms: int, zones: Iterable[str] | None = None) -> dict[str, ZoneOutput]:
        wanted = self.schedule.zones if zones is None else [z for z in zones
                                                            if z in self.schedule.zones]
        return {zone: self._zone(zone, now_ms) for zone in wanted}

    def _zone(self, zone: str, now_ms: int) -> ZoneOutput:
        volume = self.schedule.zones[zone].volume_db
        voice = self._voice(zone, now_ms)
        music = self._music(zone, now_ms)
        if music is not None:
            duck = self.schedule.duck_db if voice is not None else 0.0
            music = music.model_copy(update={"gain_db": _clamp(music.gain_db + volume + duck)})
        if voice is not None:
            voice = voice.model_copy(update={"gain_db": _clamp(voice.gain_db + volume)})
        return ZoneOutput(zone=zone, music=music, voice=voice)

    def _active_daypart(self, zone: str, now_ms: int) -> tuple[Daypart, int] | None:
        midnight = self._midnight_ms(now_ms)
        for part in self.schedule.dayparts:
            if not _applies(part.zones, zone):
                continue
            for base in (midnight - DAY_MS, midnight):
                lo, hi = self._window(base, part.start, part.end)
                if lo <= now_ms < hi and self._plays_on(part, base):
                    return part, lo
        return None

    def _music(self, zone: str, now_ms: int) -> Layer | None:
        found = self._active_daypart(zone, now_ms)
        if found is None:
            return None
        part, began = found
        playlist = [t for t in part.playlist if t in self.playable]  # skip uncached assets
        if not playlist:
            return None
        durations = [self.schedule.tracks[t].duration_ms for t in playlist]
        offset = (now_ms - began) % sum(durations)
        for track_id, duration in zip(playlist, durations, strict=True):
            if offset < duration:
                return self._layer(track_id, "music", part.name, now_ms - offset, part.gain_db)
            offset -= duration
        raise AssertionError("offset is below the playlist's total")  # pragma: no cover

    def _voice(self, zone: str, now_ms: int) -> Layer | None:
        best: _Voice | None = None
        for candidate in self._voices(zone, now_ms):
            if best is None or candidate.rank > best.rank:
                best = candidate
        return None if best is None else best.layer

    def _voices(self, zone: str, now_ms: int) -> Iterable[_Voice]:
        midnight = self._midnight_ms(now_ms)
        for ann in self.schedule.announcements:
            if not _applies(ann.zones, zone) or ann.track_id not in self.playable:
                continue
            start = self._announcement_start(ann, midnight, now_ms)
            if start is not None:
                yield _Voice((ann.priority, 1, ann.name),
                             self._layer(ann.track_id, "announcement", ann.name, start,
                                         ann.gain_db))
        for spot in self.schedule.spots:
            if not _applies(spot.zones, zone) or spot.track_id not in self.playable:
                continue
            duration = self.schedule.tracks[spot.track_id].duration_ms
            if spot.trigger == "presence":
                started = self._presence_started.get((spot.name, zone))
                if started is None or not started <= now_ms < started + duration:
                    continue
            else:
                started = self._interval_start(spot, now_ms, duration)
                if started is None:
                    continue
            yield _Voice((spot.priority, 0, spot.name),
                         self._layer(spot.track_id, "spot", spot.name, started, spot.gain_db))

    def _announcement_start(self, ann: Announcement, midnight: int, now_ms: int) -> int | None:
        duration = self.schedule.tracks[ann.track_id].duration_ms
        for base in (midnight - DAY_MS, midnight):
            start = base + hhmm_seconds(ann.at) * 1000
            if start <= now_ms < start + duration and self._plays_on(ann, base):
                return start
        return None

    def _interval_start(self, spot: Spot, now_ms: int, duration: int) -> int | None:
        assert spot.every_s is not None
        every = spot.every_s * 1000
        midnight = self._midnight_ms(now_ms)
        for base in (midnight - DAY_MS, midnight):
            lo, hi = self._window(base, spot.start, spot.end)
            if lo <= now_ms < hi and self._plays_on(spot, base):
                start = lo + (now_ms - lo) // every * every
                # a spot that would run past its window's end does not start
                return start if now_ms < start + duration and start + duration <= hi else None
        return None

    def _layer(self, track_id: str, kind: str, item: str, started: int, gain: float) -> Layer:
        return Layer(track_id=track_id, sha256=self.schedule.tracks[track_id].sha256,
                     kind=kind, item=item, started_ms=started, gain_db=gain)  # type: ignore[arg-type]

    # ---- when to look again ------------------------------------------------------------------

    def next_change_ms(self, now_ms: int) -> int:
        """The earliest time after ``now_ms`` at which ``output`` may differ."""
        candidates: list[int] = []
        midnight = self._midnight_ms(now_ms)
        for base in (midnight - DAY_MS, midnight, midnight + DAY_MS):
            for part in self.schedule.dayparts:
                candidates += self._window(base, part.start, part.end)
            for ann in self.schedule.announcements:
                start = base + hhmm_seconds(ann.at) * 1000
                candidates += [start, start + self.schedule.tracks[ann.track_id].duration_ms]
            for spot in self.schedule.spots:
                lo, hi = self._window(base, spot.start, spot.end)
                candidates += [lo, hi]
                if spot.trigger == "interval" and spot.every_s and lo <= now_ms < hi:
                    every = spot.every_s * 1000
                    start = lo + (now_ms - lo) // every * every
                    duration = self.schedule.tracks[spot.track_id].duration_ms
                    candidates += [start + duration, start + every]
        for (spot_name, _zone), started in self._presence_started.items():
            found = next((s for s in self.schedule.spots if s.name == spot_name), None)
            if found is not None:
                candidates.append(started + self.schedule.tracks[found.track_id].duration_ms)
        for out in self.output(now_ms).values():
            if out.music is not None:
                candidates.append(out.music.started_ms
                                  + self.schedule.tracks[out.music.track_id].duration_ms)
        later = [c for c in candidates if c > now_ms]
        return min(later, default=now_ms + MAX_STEP_MS)


def _clamp(gain: float) -> float:
    return max(-96.0, min(12.0, gain))
