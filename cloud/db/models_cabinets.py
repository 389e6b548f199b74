"""Cabinet pickup (decision 0066): vending cabinets, what each door holds, and the
doors held for online orders.

Imported by ``cloud.db.models`` so that ``Base.metadata`` holds these tables. Times are
UTC epoch ms; coordinates WGS84 degrees, as ``store_locations``.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.models import Base, Id


class Cabinet(Base):
    """A vending cabinet of a store (its device id there), and where it stands."""

    __tablename__ = "cabinets"
    __table_args__ = (
        PrimaryKeyConstraint("store_id", "cabinet_id", name="pk_cabinets"),
        Index("ix_cabinets_lat", "lat", "lon"),  # routing's box around the shopper
    )

    store_id: Mapped[str] = mapped_column(Id)
    cabinet_id: Mapped[str] = mapped_column(Id)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    accepts_orders: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_ms: Mapped[int]


class CabinetDoor(Base):
    """One door: the sku behind it and how many units. ``order_id`` set: the door is
    held for that order's pickup (not sold, not offered to another order)."""

    __tablename__ = "cabinet_doors"
    __table_args__ = (
        PrimaryKeyConstraint("store_id", "cabinet_id", "door", name="pk_cabinet_doors"),
        # No index by sku: routing asks per cabinet (the primary key's prefix); an sku
        # index made SQLite scan a whole sku's doors for every cabinet of the box.
        CheckConstraint("qty >= 0", name="qty_nonneg"),
    )

    store_id: Mapped[str] = mapped_column(Id)
    cabinet_id: Mapped[str] = mapped_column(Id)
    door: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(Id)
    qty: Mapped[int] = mapped_column(Integer)
    order_id: Mapped[str | None] = mapped_column(Id)
    updated_ms: Mapped[int]


class CabinetPickup(Base):
    """An order to be collected from one door; ``status`` reserved | ready | picked_up |
    expired (``protocols.pickup``)."""

    __tablename__ = "cabinet_pickups"
    __table_args__ = (Index("ix_cabinet_pickups_cabinet", "store_id", "cabinet_id", "status"),)

    order_id: Mapped[str] = mapped_column(Id, primary_key=True)
    store_id: Mapped[str] = mapped_column(Id)
    cabinet_id: Mapped[str] = mapped_column(Id)
    door: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(Id)
    qty: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    expires_ms: Mapped[int]
    created_ms: Mapped[int]
    updated_ms: Mapped[int]


class CabinetVend(Base):
    """A vend taken off its door's units, once per (store, event id): a redelivered
    ``vend`` event finds its row and moves nothing."""

    __tablename__ = "cabinet_vends"
    __table_args__ = (PrimaryKeyConstraint("store_id", "event_id", name="pk_cabinet_vends"),)

    store_id: Mapped[str] = mapped_column(Id)
    event_id: Mapped[str] = mapped_column(Id)
    cabinet_id: Mapped[str] = mapped_column(Id)
    door: Mapped[int] = mapped_column(Integer)
    moved: Mapped[bool] = mapped_column(Boolean)  # false: no such door, or none left
    received_ms: Mapped[int]
