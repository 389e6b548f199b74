"""Audio broadcast: the store's schedule document and the local-bus messages.

The agent owns the schedule (``AudioSchedule``, accepted by the audio driver as the
command / desired-shadow key ``audio_schedule``) and tells each unit what to play now:

=========================================  ====  =====================================
``store/audio/{unit}/down/output``         down  ``AudioOutput`` (retained): per zone a
                                                 music layer and a voice layer, each with
                                                 its track, start time and gain
``store/audio/{unit}/up/playing``          up    ``UnitPlaying``: the unit applied ``seq``
``store/audio/{unit}/up/status``           up    ``UnitStatus``: heartbeat
``store/presence/{sensor}/up/presence``    up    ``PresenceReport``: a shopper is near
``store/audio/{unit}/down/asset``          down  ``AssetChunk``: part of an asset (WAV)
``store/audio/{unit}/up/asset``            up    ``AssetAck``: bytes of it the unit holds
=========================================  ====  =====================================

The output is state, not a command stream: a unit that reconnects gets the retained
current output and plays from there; a stale ``seq`` is ignored. Gains are in dB
relative to full scale; music under an announcement is ducked by ``duck_db``.

Days (decision 0048): a daypart, announcement or spot plays on the ISO weekdays in
``days`` (None: every day); on a date in ``holidays`` only items marked ``holiday``
play, and those play on no other date. Assets are WAV (PCM 16-bit mono), sent to the
unit in acknowledged chunks: the unit answers each with the offset it holds, so a
transfer resumes where it stopped and an asset the unit has is never sent again.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from protocols.ids import Id
from protocols.messages import EpochMs, Msg

DEVICE_KIND = "audio"
OUTPUT = "output"
PLAYING = "playing"
STATUS = "status"
PRESENCE_KIND = "presence"
PRESENCE = "presence"
ASSET = "asset"
# 24 KiB of audio is 32 KiB of base64: well inside a unit's bus buffer (64 KiB).
ASSET_CHUNK_MAX = 24 * 1024

Sha256 = Field(pattern=r"^[0-9a-f]{64}$")
_DATE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
# -96 dB is below a 16-bit converter's floor; +12 dB is the most any unit's amp takes.
Gain = Field(default=0.0, ge=-96.0, le=12.0)


def hhmm_seconds(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60


def _check_days(value: list[int] | None) -> list[int] | None:
    if value is not None and not all(1 <= d <= 7 for d in value):
        raise ValueError("days are ISO weekdays, 1 (Monday) to 7 (Sunday)")
    return value


def check_dates(value: list[str]) -> list[str]:
    if not all(_DATE.match(d) for d in value):
        raise ValueError("a holiday is a date, YYYY-MM-DD")
    return value


def _check_hhmm(value: str | None) -> str | None:
    if value is not None and not _HHMM.match(value):
        raise ValueError("time of day must be HH:MM (00:00-24:00)")
    return value


# ---- the schedule document ------------------------------------------------------------


class Track(Msg):
    sha256: str = Sha256
    duration_ms: int = Field(gt=0, le=3_600_000)
    title: str | None = Field(default=None, max_length=200)


class Zone(Msg):
    volume_db: float = Gain
    presence_sensors: list[Id] = Field(default_factory=list, max_length=64)


class Daypart(Msg):
    name: Id
    start: str
    end: str
    playlist: list[Id] = Field(min_length=1, max_length=1000)
    zones: list[Id] | None = None  # None = every zone
    gain_db: float = Gain
    days: list[int] | None = Field(default=None, max_length=7)  # ISO weekdays; None = all
    holiday: bool = False  # True: plays on holidays only; False: never on a holiday

    _hhmm = field_validator("start", "end")(_check_hhmm)
    _days = field_validator("days")(_check_days)


class Announcement(Msg):
    name: Id
    at: str
    track_id: Id
    zones: list[Id] | None = None
    gain_db: float = Gain
    priority: int = Field(default=100, ge=0, le=1000)
    days: list[int] | None = Field(default=None, max_length=7)
    holiday: bool = False

    _hhmm = field_validator("at")(_check_hhmm)
    _days = field_validator("days")(_check_days)


class Spot(Msg):
    """A promotion spot: every ``every_s`` inside its window, or when a shopper is near."""

    name: Id
    track_id: Id
    trigger: Literal["interval", "presence"] = "interval"
    every_s: int | None = Field(default=None, gt=0, le=86_400)
    cooldown_s: int = Field(default=120, ge=0, le=86_400)  # presence: not again before this
    start: str | None = None  # window; None = all day
    end: str | None = None
    zones: list[Id] | None = None
    gain_db: float = Gain
    priority: int = Field(default=10, ge=0, le=1000)
    days: list[int] | None = Field(default=None, max_length=7)
    holiday: bool = False

    _hhmm = field_validator("start", "end")(_check_hhmm)
    _days = field_validator("days")(_check_days)

    @model_validator(mode="after")
    def _interval_needs_every(self) -> Spot:
        if self.trigger == "interval" and self.every_s is None:
            raise ValueError("an interval spot needs every_s")
        return self


class AudioSchedule(Msg):
    v: Literal[1] = 1
    version: int = Field(ge=1)
    timezone: str = Field(default="UTC", max_length=64)
    duck_db: float = Field(default=-12.0, ge=-96.0, le=0.0)
    tracks: dict[Id, Track] = Field(max_length=10_000)
    zones: dict[Id, Zone] = Field(min_length=1, max_length=64)
    dayparts: list[Daypart] = Field(default_factory=list, max_length=48)
    announcements: list[Announcement] = Field(default_factory=list, max_length=200)
    spots: list[Spot] = Field(default_factory=list, max_length=200)
    holidays: list[str] = Field(default_factory=list, max_length=366)  # YYYY-MM-DD, local

    _dates = field_validator("holidays")(check_dates)

    @model_validator(mode="after")
    def _references_exist(self) -> AudioSchedule:
        used = [t for d in self.dayparts for t in d.playlist]
        used += [a.track_id for a in self.announcements] + [s.track_id for s in self.spots]
        missing = sorted(set(used) - set(self.tracks))
        if missing:
            raise ValueError(f"unknown track ids {missing[:5]}")
        zones = [z for d in self.dayparts for z in d.zones or ()]
        zones += [z for a in self.announcements for z in a.zones or ()]
        zones += [z for s in self.spots for z in s.zones or ()]
        unknown = sorted(set(zones) - set(self.zones))
        if unknown:
            raise ValueError(f"unknown zones {unknown[:5]}")
        return self


# ---- local-bus messages -----------------------------------------------------------------


class Layer(Msg):
    track_id: Id
    sha256: str = Sha256
    kind: Literal["music", "announcement", "spot"]
    item: Id  # the daypart, announcement or spot that put it there
    started_ms: EpochMs  # the unit plays from offset (now - started_ms)
    gain_db: float = Field(ge=-96.0, le=12.0)


class ZoneOutput(Msg):
    zone: Id
    music: Layer | None = None
    voice: Layer | None = None


class AudioOutput(Msg):
    v: Literal[1] = 1
    seq: int = Field(ge=1)
    ts: EpochMs  # when this output takes effect
    zones: list[ZoneOutput] = Field(max_length=64)


class UnitPlaying(Msg):
    v: Literal[1] = 1
    seq: int = Field(ge=0)
    ts: EpochMs


class UnitStatus(Msg):
    v: Literal[1] = 1
    boot_id: Id
    ts: EpochMs


class PresenceReport(Msg):
    v: Literal[1] = 1
    present: bool
    ts: EpochMs


class AssetChunk(Msg):
    """``offset`` 0 with empty ``data_b64`` asks what the unit holds (its ack says)."""

    v: Literal[1] = 1
    sha256: str = Sha256
    size: int = Field(gt=0, le=64 * 1024 * 1024)  # the whole asset
    offset: int = Field(ge=0)
    data_b64: str = Field(default="", max_length=ASSET_CHUNK_MAX * 4 // 3 + 4)


class AssetAck(Msg):
    """The unit holds ``have`` bytes of the asset; ``complete`` once verified."""

    v: Literal[1] = 1
    sha256: str = Sha256
    have: int = Field(ge=0)
    complete: bool = False
    error: str | None = Field(default=None, max_length=200)  # e.g. "sha256_mismatch"
