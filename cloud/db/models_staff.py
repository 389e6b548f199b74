"""The staff assistant (decision 0065): assistants, the members they recruited by join
code, members' birthdays, the sales index the store's figures are computed from, and the
coupons assistants gave.

Imported by ``cloud.db.models`` so that ``Base.metadata`` holds these tables. Times are
UTC epoch ms; money integer minor units.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.models import Base, Id

NAME_MAX = 100  # a display name on a badge and a ranking row
ISSUER_MAX = 128  # a token's sender name (``TokenGrant.sender``)


class StaffAssistant(Base):
    """A shop assistant of one store. ``assistant_id`` is the ``name`` of the assistant's
    API token (a store-assistant grant); retired assistants stay (``active`` false) so
    their recruits and figures keep a name."""

    __tablename__ = "staff_assistants"
    __table_args__ = (Index("ix_staff_assistants_store", "store_id", "assistant_id"),)

    assistant_id: Mapped[str] = mapped_column(Id, primary_key=True)
    store_id: Mapped[str] = mapped_column(Id)
    display_name: Mapped[str] = mapped_column(String(NAME_MAX))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class MemberRecruit(Base):
    """A member who joined with an assistant's join code: where, by whom, and the join's
    idempotency key (the member app's ``join_id``)."""

    __tablename__ = "member_recruits"
    __table_args__ = (
        UniqueConstraint("join_id", name="uq_member_recruits_join_id"),
        Index("ix_member_recruits_store", "store_id", "joined_ms"),
        Index("ix_member_recruits_assistant", "assistant_id", "joined_ms"),
    )

    member_id: Mapped[str] = mapped_column(Id, primary_key=True)
    store_id: Mapped[str] = mapped_column(Id)
    assistant_id: Mapped[str] = mapped_column(Id)
    join_id: Mapped[str] = mapped_column(Id)
    joined_ms: Mapped[int] = mapped_column(BigInteger)


class MemberBirthday(Base):
    """Month and day only (``month_day`` = month * 100 + day, e.g. 1231): enough for a
    birthday greeting, no age kept (members hold minimal personal data, decision 0007)."""

    __tablename__ = "member_birthdays"

    member_id: Mapped[str] = mapped_column(Id, primary_key=True)
    month_day: Mapped[int] = mapped_column(Integer)


class StoreSale(Base):
    """One row per ``sale`` event (its store and id are the key), written by the staff
    ingest hook: the narrow, indexed table the store's figures are grouped from, rather
    than the JSON of every event."""

    __tablename__ = "store_sales"
    __table_args__ = (
        Index("ix_store_sales_store", "store_id", "ts"),
        Index("ix_store_sales_member", "member_id", "ts"),
    )

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    event_id: Mapped[str] = mapped_column(Id, primary_key=True)
    member_id: Mapped[str | None] = mapped_column(Id)
    paid: Mapped[int] = mapped_column(BigInteger)  # totals.paid, minor units
    ts: Mapped[int] = mapped_column(BigInteger)  # the sale's time at the store


class StaffCoupon(Base):
    """A coupon an assistant gave a lapsed member with one tap. ``lapse_ms`` is the
    member's last activity when it was given: one coupon per member, store and lapse,
    however often (and by whomever) the button is pressed."""

    __tablename__ = "staff_coupons"
    __table_args__ = (
        UniqueConstraint("store_id", "member_id", "lapse_ms",
                         name="uq_staff_coupons_store_member_lapse"),
        Index("ix_staff_coupons_store", "store_id", "issued_ms"),
    )

    code: Mapped[str] = mapped_column(Id, primary_key=True)
    store_id: Mapped[str] = mapped_column(Id)
    member_id: Mapped[str] = mapped_column(Id)
    lapse_ms: Mapped[int] = mapped_column(BigInteger)
    issued_by: Mapped[str] = mapped_column(String(ISSUER_MAX))
    issued_ms: Mapped[int] = mapped_column(BigInteger)
