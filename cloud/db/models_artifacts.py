"""Artifacts uploaded to the cloud (decision 0036): one row per sha256, with its signed
manifest as served to the boxes. A (target, version) names one artifact only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.models import Base


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("target", "version", name="uq_artifacts_target_version"),)

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(140))
    version: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int]
    # The signed document {"payload": manifest, "key_id", "signature"}, as the box gets it.
    signed: Mapped[dict[str, Any]]
