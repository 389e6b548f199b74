"""SQLAlchemy 2 declarative models of the cloud's view of the fleet.

Times are UTC epoch milliseconds (``BigInteger``), as on the wire. There are no
foreign keys between stores, devices and events on purpose: MQTT gives no order
across topics, so an event may arrive before the birth of its store.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Id = String(64)  # protocols.topics ids are at most 64 chars


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, int: BigInteger}


class Store(Base):
    __tablename__ = "stores"

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    # bd_seq of the newest session we know of; dead_bd_seq = the session whose death
    # we applied, so a redelivered birth of that same session cannot revive the store.
    bd_seq: Mapped[int | None] = mapped_column(BigInteger)
    dead_bd_seq: Mapped[int | None] = mapped_column(BigInteger)
    agent_version: Mapped[str | None] = mapped_column(String(64))
    last_birth_ms: Mapped[int | None]
    last_death_ms: Mapped[int | None]
    last_seen_ms: Mapped[int | None]
    birth: Mapped[dict[str, Any] | None]


class Device(Base):
    __tablename__ = "devices"

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    device_id: Mapped[str] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(Id)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    model: Mapped[str | None] = mapped_column(String(128))
    fw: Mapped[str | None] = mapped_column(String(128))
    last_seen_ms: Mapped[int | None]
    health: Mapped[dict[str, Any] | None]


class Event(Base):
    """A business event; ``(store_id, id)`` is its idempotency key (decision 0026): an
    event id is unique within its store only, so two stores may use the same id."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_store_seq", "store_id", "seq"),
        # The API pages through events in (received_ms, store_id, id) order.
        Index("ix_events_received", "received_ms", "store_id", "id"),
    )

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(Id)
    device_id: Mapped[str | None] = mapped_column(Id)
    seq: Mapped[int]
    ts: Mapped[int]
    historical: Mapped[bool] = mapped_column(Boolean, default=False)
    data: Mapped[dict[str, Any]]
    received_ms: Mapped[int]


class TelemetryLatest(Base):
    """The newest value of each metric of each device (bounded: one row per metric)."""

    __tablename__ = "telemetry_latest"

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    device_id: Mapped[str] = mapped_column(Id, primary_key=True)
    metric: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    ts: Mapped[int]


class Shadow(Base):
    __tablename__ = "shadows"

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    target: Mapped[str] = mapped_column(Id, primary_key=True)
    desired: Mapped[dict[str, Any] | None]
    desired_version: Mapped[int] = mapped_column(BigInteger, default=0)
    reported: Mapped[dict[str, Any] | None]
    reported_version: Mapped[int | None] = mapped_column(BigInteger)
    updated_ms: Mapped[int]


class Command(Base):
    __tablename__ = "commands"
    __table_args__ = (
        Index("ix_commands_store", "store_id", "created_ms"),
        # A fan-out's progress is a count by status, its failures a page by cmd_id: both
        # from the index alone (decision 0061).
        Index("ix_commands_fanout", "fanout_id", "status", "cmd_id"),
        # A retried POST with the same Idempotency-Key finds the first command. Per
        # sender: one token cannot reach another's command by guessing its key. NULLs
        # are distinct (SQLite and PostgreSQL): commands without a key never collide.
        UniqueConstraint("sender", "idempotency_key", name="uq_commands_idempotency"),
    )

    cmd_id: Mapped[str] = mapped_column(Id, primary_key=True)
    store_id: Mapped[str] = mapped_column(Id)
    target: Mapped[str] = mapped_column(Id)
    name: Mapped[str] = mapped_column(Id)
    args: Mapped[dict[str, Any]]
    expires_at: Mapped[int]
    created_ms: Mapped[int]
    # pending | undeliverable | ok | error | expired | unknown_command | rejected
    status: Mapped[str] = mapped_column(String(32), default="pending")
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    completed_ms: Mapped[int | None]
    # Who sent it and why (decision 0044); None on rows from before migration 0014.
    sender: Mapped[str | None] = mapped_column(String(128))
    sender_role: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    # The fleet-wide command it is one of, and the client's idempotency key (decision
    # 0061); None on single commands and on rows from before migration 0020.
    fanout_id: Mapped[str | None] = mapped_column(Id)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))


class CommandFanout(Base):
    """One command sent to a selection of stores: a ``Command`` row per store carries
    its ``fanout_id``; progress is counted from those rows (decision 0061)."""

    __tablename__ = "command_fanouts"
    __table_args__ = (
        UniqueConstraint("sender", "idempotency_key", name="uq_command_fanouts_idempotency"),
    )

    fanout_id: Mapped[str] = mapped_column(Id, primary_key=True)
    target: Mapped[str] = mapped_column(Id)
    name: Mapped[str] = mapped_column(Id)
    args: Mapped[dict[str, Any]]
    selection: Mapped[dict[str, Any]]  # {"all": bool, "stores", "regions", "groups"}
    stores: Mapped[int]  # commands created, one per store selected
    expires_at: Mapped[int]
    created_ms: Mapped[int]
    sender: Mapped[str | None] = mapped_column(String(128))
    sender_role: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))



# Tables of other modules; importing them here puts them in Base.metadata for Alembic
# and the model/migration drift test. Artifacts of rollouts (decision 0036):
from cloud.db import models_artifacts as models_artifacts  # noqa: E402

# Audio schedules authored at HQ (decision 0048):
from cloud.db import models_audio as models_audio  # noqa: E402

# Vending cabinets, their doors and pickups held in them (decision 0066):
from cloud.db import models_cabinets as models_cabinets  # noqa: E402

# Content manifests and each store's applied content (decision 0046):
from cloud.db import models_content as models_content  # noqa: E402

# Store identities and revoked certificates (decision 0035):
from cloud.db import models_enrolment as models_enrolment  # noqa: E402

# Loyalty and promotions:
from cloud.db import models_loyalty as models_loyalty  # noqa: E402

# Members at the store: home stores, spends authorised or settled (decision 0064):
from cloud.db import models_members as models_members  # noqa: E402

# Online orders, stock, store locations and offline coupon ranges (same reason).
from cloud.db import models_orders as models_orders  # noqa: E402

# Rollouts, their targets and failed (store, device, artifact) pairs (decision 0040):
from cloud.db import models_rollouts as models_rollouts  # noqa: E402

# Screen playlists authored at HQ (decision 0051):
from cloud.db import models_screens as models_screens  # noqa: E402

# Staff assistants, members they recruited, the sales index they rank by (decision 0065):
from cloud.db import models_staff as models_staff  # noqa: E402
