"""The authoring model: the chain's audio schedule and its overrides.

The chain's part has the fields of the box's ``protocols.audio.AudioSchedule`` (tracks
by asset sha256, zones, dayparts by weekday with playlists, fixed-time announcements,
promotion spots with priority and an optional presence trigger, holidays on which only
the items marked ``holiday`` play) except ``version`` and ``timezone``, which the
compiler sets per store. An ``Override`` reaches stores by store id, region or store
group (as rollouts select them) and changes what they play: its dayparts replace the
chain's, its announcements and spots are added or replace those of the same name,
``remove`` drops some by name, its zones' levels, tracks and holidays are merged in.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocols.audio import Announcement, Daypart, Spot, Track, Zone, check_dates
from protocols.ids import Id

MAX_OVERRIDES = 500  # one per region and group, and the stores that differ


class Override(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Id
    stores: list[Id] = Field(default_factory=list, max_length=10_000)
    regions: list[Id] = Field(default_factory=list, max_length=100)
    groups: list[Id] = Field(default_factory=list, max_length=100)
    duck_db: float | None = Field(default=None, ge=-96.0, le=0.0)
    tracks: dict[Id, Track] = Field(default_factory=dict, max_length=1000)
    zones: dict[Id, Zone] = Field(default_factory=dict, max_length=64)
    dayparts: list[Daypart] | None = Field(default=None, max_length=48)  # replace the chain's
    announcements: list[Announcement] = Field(default_factory=list, max_length=200)
    spots: list[Spot] = Field(default_factory=list, max_length=200)
    remove: list[Id] = Field(default_factory=list, max_length=200)  # announcement/spot names
    holidays: list[str] = Field(default_factory=list, max_length=366)

    _dates = field_validator("holidays")(check_dates)

    @model_validator(mode="after")
    def _targets_something(self) -> Override:
        if not (self.stores or self.regions or self.groups):
            raise ValueError("an override names stores, regions or groups")
        return self

    @property
    def level(self) -> int:
        """Precedence: a store's own override wins over its groups', groups' over
        regions' (applied later, so it has the last word)."""
        return 2 if self.stores else 1 if self.groups else 0


class AudioScheduleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duck_db: float = Field(default=-12.0, ge=-96.0, le=0.0)
    tracks: dict[Id, Track] = Field(max_length=10_000)
    zones: dict[Id, Zone] = Field(min_length=1, max_length=64)
    dayparts: list[Daypart] = Field(default_factory=list, max_length=48)
    announcements: list[Announcement] = Field(default_factory=list, max_length=200)
    spots: list[Spot] = Field(default_factory=list, max_length=200)
    holidays: list[str] = Field(default_factory=list, max_length=366)
    overrides: list[Override] = Field(default_factory=list, max_length=MAX_OVERRIDES)

    _dates = field_validator("holidays")(check_dates)

    def assets(self) -> set[str]:
        """Every asset sha256 the schedule or an override names."""
        found = {t.sha256 for t in self.tracks.values()}
        return found | {t.sha256 for o in self.overrides for t in o.tracks.values()}
