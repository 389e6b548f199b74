"""Members at the store (decision 0064): home stores and the spends boxes asked for.

Imported by ``cloud.db.models`` so that ``Base.metadata`` holds these tables. Times are
UTC epoch ms; amounts integer minor units (stored value) or points.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.models import Base, Id

SPEND_ID_MAX = 40  # a box's uuid7 (36) with room; "spend:<store>/<id>" fits a 128 key


class MemberHomeStore(Base):
    """The store a member belongs to (joined there, or set by HQ): its box keeps the
    member in its offline snapshot."""

    __tablename__ = "member_home_stores"
    __table_args__ = (Index("ix_member_home_stores_store", "store_id", "member_id"),)

    member_id: Mapped[str] = mapped_column(Id, primary_key=True)
    store_id: Mapped[str] = mapped_column(Id)
    since_ms: Mapped[int] = mapped_column(BigInteger)


class MemberSpend(Base):
    """A points or stored-value spend a box asked for: authorised online, or spent
    offline within the box's cap and settled when its event arrived.

    ``(store_id, spend_id)`` is the idempotency key: the same spend authorised again,
    or its offline event after an authorisation whose answer was lost, changes nothing.
    ``taken`` is what the ledger gave; ``shortfall`` what it could not (``status``
    ``short``): the member owes it, snapshots show it as a negative balance."""

    __tablename__ = "member_spends"
    __table_args__ = (
        PrimaryKeyConstraint("store_id", "spend_id", name="pk_member_spends"),
        Index("ix_member_spends_member", "member_id", "unit", "status"),
        # "seen at the store recently" for the snapshot
        Index("ix_member_spends_store", "store_id", "recorded_ms"),
    )

    store_id: Mapped[str] = mapped_column(Id)
    spend_id: Mapped[str] = mapped_column(String(SPEND_ID_MAX))
    member_id: Mapped[str] = mapped_column(Id)
    unit: Mapped[str] = mapped_column(String(16))  # points | stored_value
    amount: Mapped[int] = mapped_column(BigInteger)  # asked for, > 0
    taken: Mapped[int] = mapped_column(BigInteger)
    shortfall: Mapped[int] = mapped_column(BigInteger, default=0)
    mode: Mapped[str] = mapped_column(String(8))  # online | offline
    status: Mapped[str] = mapped_column(String(16))  # authorised | settled | short
    spent_ms: Mapped[int] = mapped_column(BigInteger)  # the box's time of the spend
    recorded_ms: Mapped[int] = mapped_column(BigInteger)  # the cloud's
