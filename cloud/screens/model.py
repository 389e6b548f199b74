"""The authoring model: the chain's screen playlists.

The chain's playlists are the box's ``protocols.screens.ScreenPlaylists`` without
``version`` and ``timezone``, which the compiler sets per store. Targeting inside a
store is by zone (a playlist's or an item's ``zones``); which stores get them is the
publish's selection (stores, regions, groups).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from protocols.screens import MAX_PLAYLISTS, Playlist, check_playlists


class ScreenPlaylistsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    playlists: list[Playlist] = Field(min_length=1, max_length=MAX_PLAYLISTS)

    _names = field_validator("playlists")(check_playlists)

    def assets(self) -> set[str]:
        """Every asset sha256 an image or video names."""
        return {i.sha256 for p in self.playlists for i in p.items if i.sha256}
