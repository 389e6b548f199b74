"""Content manifests (decision 0046): what each store is told to play, show and charge.

``content_manifests`` keeps every signed manifest published to a store (its version
rises per store); ``content_status`` the latest ``content_status`` report of each store
(which manifest it applied, since when, what each consumer took, its labels).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.models import Base


class ContentManifest(Base):
    __tablename__ = "content_manifests"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True)
    created_ms: Mapped[int]
    # The signed document {"payload": manifest, "key_id", "signature"} as published.
    signed: Mapped[dict[str, Any]]


class ContentStatus(Base):
    __tablename__ = "content_status"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    applied_version: Mapped[int | None]
    applied_ms: Mapped[int | None]  # since when the box runs it
    price_book_version: Mapped[int | None]
    schedule_version: Mapped[str | None] = mapped_column(String(64))
    assets_present: Mapped[int]
    assets_missing: Mapped[int]
    detail: Mapped[str] = mapped_column(String(500))  # the last refusal, or ""
    reported_ms: Mapped[int]  # the box's time of the report
    # {"pricebook"|"schedule"|"playlists": {"version", "applied_ms", "detail"}}: what
    # each consumer on the box took (protocols.content.PartApplied), and the shelf
    # labels' {"current", "pending", "stale"} (migration 0018)
    parts: Mapped[dict[str, Any] | None]
    labels: Mapped[dict[str, Any] | None]
