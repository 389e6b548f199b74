"""Rollouts (decision 0040): one artifact offered to stores wave by wave.

``rollouts`` holds the plan and its state, ``rollout_targets`` one row per store (its
wave, its device and where its install stands) and ``rollout_failures`` every (store,
device, artifact) that failed once: it is never offered again, by any rollout.

Targeting and windows (decision 0043, migration 0013): ``store_groups`` puts stores in
named groups (a store may be in several), ``store_maintenance`` gives a store its time
zone and daily maintenance window, outside which nothing is offered to it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.models import Base


class Rollout(Base):
    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(140))  # the artifact's target
    version: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(64))  # "agent" or a device id
    stores: Mapped[list[str]] = mapped_column(JSON)  # resolved from the selection
    # what was asked: {"stores", "regions", "groups", "models"} (None: before 0013)
    selection: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    canary_size: Mapped[int]
    wave_size: Mapped[int]
    success_pct: Mapped[int]  # % of a wave that must succeed before the next is offered
    failure_threshold: Mapped[int]  # failed targets that halt the rollout
    deadline_s: Mapped[int]  # per target, from its offer
    state: Mapped[str] = mapped_column(String(16))
    wave: Mapped[int]  # the wave being offered (0: the canary)
    created_ms: Mapped[int]
    updated_ms: Mapped[int]
    reason: Mapped[str | None] = mapped_column(Text)  # why it halted


class RolloutTarget(Base):
    __tablename__ = "rollout_targets"

    rollout_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    wave: Mapped[int]
    # the device its offer names; None: the rollout's (rows before 0013)
    device: Mapped[str | None] = mapped_column(String(64))
    # waiting, offered, deferred (busy on the box), installing, succeeded, failed,
    # skipped (failed before)
    state: Mapped[str] = mapped_column(String(16))
    offered_ms: Mapped[int | None]
    deadline_ms: Mapped[int | None]
    detail: Mapped[str | None] = mapped_column(Text)
    updated_ms: Mapped[int]


class RolloutFailure(Base):
    __tablename__ = "rollout_failures"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    rollout_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    created_ms: Mapped[int]


class StoreGroup(Base):
    """A store in a named group (rollouts target groups, decision 0043)."""

    __tablename__ = "store_groups"

    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class StoreMaintenance(Base):
    """A store's time zone (IANA) and daily maintenance window, in local wall-clock
    minutes since midnight; ``end_min < start_min`` crosses midnight."""

    __tablename__ = "store_maintenance"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64))
    start_min: Mapped[int]
    end_min: Mapped[int]
    updated_ms: Mapped[int]
