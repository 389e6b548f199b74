"""Audio schedules authored at HQ (decision 0048, migration 0017).

``audio_schedules`` keeps every version of the chain's schedule (``cloud.audio.model``:
the chain's part and its overrides) as it was saved; the newest one is in effect, and
its version is the version of every store's compiled document.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.models import Base


class AudioScheduleVersion(Base):
    __tablename__ = "audio_schedules"

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_ms: Mapped[int]
    created_by: Mapped[str | None] = mapped_column(String(128))
