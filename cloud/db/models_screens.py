"""Screen playlists authored at HQ (decision 0051, migration 0019).

``screen_playlists`` keeps every version of the chain's playlists
(``cloud.screens.model``) as saved; the newest is in effect, and its version is the
version of every store's ``playlists`` document.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.models import Base


class ScreenPlaylistsVersion(Base):
    __tablename__ = "screen_playlists"

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_ms: Mapped[int]
    created_by: Mapped[str | None] = mapped_column(String(128))
