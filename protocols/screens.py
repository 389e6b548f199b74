"""Screen playlists: the ``playlists`` document of a store's content manifest (decision
0051), and what plays on a surface in a zone at a given time.

HQ authors the chain's playlists (``cloud.screens``); each store's signed manifest
carries them with the store's time zone and the version, and the images and videos as
the manifest's assets of ``doc`` ``playlists``. The box (``edge_agent.modules.screens``)
serves the now-playing list to the cart screens and the signage pages.

A playlist is for one surface (``cart``: the cart tablets when idle, ``signage``: the
store's screens) and has items: an ``image`` or a ``video`` (an asset by sha256) or a
``card`` (an HTML card: a title and a promotion id, rendered on the box from the live
promotion the till holds, so the discount shown is the one the till charges). Items
show for ``duration_s`` each, in order. Both a playlist and an item may be limited to
*windows* (ISO weekdays, local start and end) and to *zones*; an item plays when its
playlist and itself both allow it. No windows: always; no zones: every zone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocols.artifacts import Sha256
from protocols.ids import Id

DOCUMENT = "playlists"  # the manifest's document and its assets' ``doc``
Surface = Literal["cart", "signage"]
SURFACES: tuple[Surface, ...] = ("cart", "signage")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
MAX_ITEMS = 500  # a day of 10-second slides is far fewer distinct items
MAX_PLAYLISTS = 200  # a surface per zone and daypart, with room


def _minutes(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


class Window(BaseModel):
    """Local time ``start`` (inclusive) to ``end`` (exclusive, ``24:00``: midnight) on
    the ISO weekdays ``days`` (1 = Monday; empty: every day)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: list[int] = Field(default_factory=list, max_length=7)
    start: str = "00:00"
    end: str = "24:00"

    @field_validator("days")
    @classmethod
    def _iso_days(cls, value: list[int]) -> list[int]:
        if any(d < 1 or d > 7 for d in value) or len(set(value)) != len(value):
            raise ValueError("days are distinct ISO weekdays 1 (Monday) to 7 (Sunday)")
        return sorted(value)

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"{value!r} is not a local time HH:MM (00:00 to 24:00)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if _minutes(self.start) >= _minutes(self.end):
            raise ValueError(f"window {self.start}-{self.end} ends before it starts "
                             "(split one over midnight into two)")
        return self

    def contains(self, local: dt.datetime) -> bool:
        minute = local.hour * 60 + local.minute
        return ((not self.days or local.isoweekday() in self.days)
                and _minutes(self.start) <= minute < _minutes(self.end))


def _open(windows: list[Window], local: dt.datetime) -> bool:
    return not windows or any(w.contains(local) for w in windows)


def _reaches(zones: list[str], zone: str | None) -> bool:
    return not zones or zone in zones


class Item(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Id
    kind: Literal["image", "video", "card"]
    sha256: Sha256 | None = None  # image, video: the asset
    title: str = Field(default="", max_length=200)
    promotion_id: Id | None = None  # card: the live promotion it shows
    # one item is on screen this long; a video is cut (or looped) to it
    duration_s: int = Field(default=10, ge=1, le=3600)
    windows: list[Window] = Field(default_factory=list, max_length=32)
    zones: list[Id] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _kind_fields(self) -> Item:
        if self.kind == "card":
            if self.promotion_id is None or not self.title or self.sha256 is not None:
                raise ValueError(f"card {self.id}: a title and a promotion_id, no sha256")
        elif self.sha256 is None or self.promotion_id is not None:
            raise ValueError(f"{self.kind} {self.id}: a sha256 (the uploaded asset), "
                             "no promotion_id")
        return self


class Playlist(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Id
    surface: Surface
    windows: list[Window] = Field(default_factory=list, max_length=32)
    zones: list[Id] = Field(default_factory=list, max_length=64)
    items: list[Item] = Field(min_length=1, max_length=MAX_ITEMS)

    @field_validator("items")
    @classmethod
    def _unique_ids(cls, items: list[Item]) -> list[Item]:
        ids = [i.id for i in items]
        if dupes := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"item ids appear twice: {dupes}")
        return items


def check_playlists(playlists: list[Playlist]) -> list[Playlist]:
    names = [p.name for p in playlists]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"playlist names appear twice: {dupes}")
    return playlists


class ScreenPlaylists(BaseModel):
    """The ``playlists`` document as a store receives it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(ge=1)
    timezone: str = Field(min_length=1, max_length=64)  # the store's, IANA
    playlists: list[Playlist] = Field(default_factory=list, max_length=MAX_PLAYLISTS)

    _names = field_validator("playlists")(check_playlists)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value

    def assets(self) -> set[str]:
        return {i.sha256 for p in self.playlists for i in p.items if i.sha256}

    def local(self, at: dt.datetime) -> dt.datetime:
        """``at`` (aware) in the store's time zone."""
        return at.astimezone(ZoneInfo(self.timezone))

    def playing(self, *, surface: Surface, zone: str | None,
                at: dt.datetime) -> Iterator[tuple[Playlist, Item]]:
        """What plays on ``surface`` in ``zone`` (None: a screen in no zone, which shows
        only what is not limited to zones) at ``at``, in playlist then item order."""
        local = self.local(at)
        for playlist in self.playlists:
            if (playlist.surface != surface or not _reaches(playlist.zones, zone)
                    or not _open(playlist.windows, local)):
                continue
            for item in playlist.items:
                if _reaches(item.zones, zone) and _open(item.windows, local):
                    yield playlist, item
