"""A store's ``playlists`` document: the newest chain version with the store's time zone.

The document is the same for every store but for the time zone, in which the box
evaluates the windows (a store cut off from HQ still switches at its local times). Its
version is the chain's: every store's document changes with it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.audio.compile import store_context
from cloud.db.models_screens import ScreenPlaylistsVersion
from cloud.screens.errors import ScreensError
from cloud.screens.model import ScreenPlaylistsSpec
from protocols.screens import ScreenPlaylists


def latest(session: Session) -> ScreenPlaylistsVersion | None:
    return session.scalars(select(ScreenPlaylistsVersion)
                           .order_by(ScreenPlaylistsVersion.version.desc()).limit(1)).first()


def compile_playlists(spec: ScreenPlaylistsSpec, *, version: int,
                      timezone: str) -> dict[str, Any]:
    doc = ScreenPlaylists(version=version, timezone=timezone, playlists=spec.playlists)
    # without nulls: a card has no sha256, an image no promotion_id
    return doc.model_dump(mode="json", exclude_none=True)


def store_playlists(session: Session, store_id: str) -> dict[str, Any]:
    """The store's document from the newest chain version; 404 when none was saved."""
    row = latest(session)
    if row is None:
        raise ScreensError(404, "no screen playlists have been saved",
                           reason="nothing_published")
    timezone = store_context(session, store_id)[0]
    return compile_playlists(ScreenPlaylistsSpec.model_validate(row.spec),
                             version=row.version, timezone=timezone)
