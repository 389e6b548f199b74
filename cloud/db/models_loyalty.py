"""Models of loyalty (members, points, tiers, coupons, stored value, commissions) and
promotions (definitions, immutable publications, sale audits and their findings).

Imported by ``cloud.db.models`` so that ``Base.metadata`` (Alembic, the drift test)
holds every table. Times are UTC epoch ms; money is integer minor units; ids are
UUIDv7 strings. Ledgers are append-only: nothing here is ever updated except the
stored-value balance (kept next to its ledger so the database can refuse a negative
one with a CHECK constraint) and the commission state machine.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.models import Base, Id

Key = String(128)  # idempotency keys and references that are not event-derived
# Keys derived from an event carry its store (decision 0026), "<kind>:<store>/<event id>":
# two 64-char ids, a separator and a prefix; 255 leaves room for the longest,
# "commission-reverse:<commission id>:<store>/<refund event id>" (213).
EventKey = String(255)


class StoreRegion(Base):
    """Which region a store belongs to; promotions may be scoped to regions."""

    __tablename__ = "store_regions"

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    region: Mapped[str] = mapped_column(Id, index=True)


class Member(Base):
    """A loyalty member. Personal data is kept to a keyed hash of the phone number."""

    __tablename__ = "members"

    member_id: Mapped[str] = mapped_column(Id, primary_key=True)
    # HMAC-SHA256 hex of the normalised phone number (see cloud.loyalty.members).
    phone_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_ms: Mapped[int]
    referred_by: Mapped[str | None] = mapped_column(Id)
    recruited_by: Mapped[str | None] = mapped_column(Id)
    is_distributor: Mapped[bool] = mapped_column(Boolean, default=False)


class PointsOp(Base):
    """One points operation (its id is the idempotency key); its entries are below."""

    __tablename__ = "points_ops"

    op_id: Mapped[str] = mapped_column(EventKey, primary_key=True)
    member_id: Mapped[str] = mapped_column(Id, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int]
    created_ms: Mapped[int]


class PointsEntry(Base):
    """Append-only points ledger; the sum of a member's ``points`` is the balance.

    Positive rows (earn, commission, a positive reverse) are *lots* with an expiry;
    negative rows (spend, expire, a negative reverse) name the lot they consume.
    """

    __tablename__ = "points_ledger"
    __table_args__ = (
        Index("ix_points_ledger_member", "member_id", "created_ms"),
        Index("ix_points_ledger_lot", "lot_id"),
    )

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    op_id: Mapped[str] = mapped_column(EventKey)
    member_id: Mapped[str] = mapped_column(Id)
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int]
    created_ms: Mapped[int]
    expires_ms: Mapped[int | None]
    lot_id: Mapped[str | None] = mapped_column(Id)


class Tier(Base):
    """A tier and its benefits; the name is the pricing engine's ``Member.tier``."""

    __tablename__ = "tiers"

    name: Mapped[str] = mapped_column(Id, primary_key=True)
    min_points: Mapped[int]
    multiplier_bp: Mapped[int] = mapped_column(Integer, default=10_000)
    discount_bp: Mapped[int] = mapped_column(Integer, default=0)
    prices: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Campaign(Base):
    __tablename__ = "campaigns"

    campaign_id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # manual | sale | referral
    trigger: Mapped[str] = mapped_column(String(16))
    # The code the engine's Coupon rule of this campaign answers to.
    engine_code: Mapped[str] = mapped_column(Id, unique=True)
    benefit: Mapped[dict[str, Any]]
    rules: Mapped[dict[str, Any]]
    validity_days: Mapped[int]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_ms: Mapped[int]


class Coupon(Base):
    __tablename__ = "coupons"
    __table_args__ = (
        # Issuing is idempotent: one coupon per campaign, member and cause (event id).
        UniqueConstraint("campaign_id", "member_id", "source_key",
                         name="uq_coupons_campaign_member_source"),
        Index("ix_coupons_member", "member_id", "issued_ms"),
    )

    code: Mapped[str] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(Id)
    member_id: Mapped[str] = mapped_column(Id)
    source_key: Mapped[str] = mapped_column(EventKey)
    issued_ms: Mapped[int]
    expires_ms: Mapped[int]
    # Set once by the expiry job for a coupon that lapsed unused (``expire_coupons``).
    expired_ms: Mapped[int | None]


class CouponRedemption(Base):
    """The primary key on ``code`` is what makes a coupon single-use."""

    __tablename__ = "coupon_redemptions"

    code: Mapped[str] = mapped_column(Id, primary_key=True)
    redeemed_ms: Mapped[int]
    store_id: Mapped[str | None] = mapped_column(Id)
    sale_id: Mapped[str | None] = mapped_column(Key)


class StoredValueAccount(Base):
    __tablename__ = "stored_value_accounts"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_nonneg"),)

    member_id: Mapped[str] = mapped_column(Id, primary_key=True)
    balance: Mapped[int]
    updated_ms: Mapped[int]


class StoredValueEntry(Base):
    __tablename__ = "stored_value_ledger"
    __table_args__ = (
        UniqueConstraint("member_id", "ref", name="uq_stored_value_ledger_member_ref"),
    )

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    member_id: Mapped[str] = mapped_column(Id)
    kind: Mapped[str] = mapped_column(String(16))  # load | spend | refund
    amount: Mapped[int]
    ref: Mapped[str] = mapped_column(Key)
    created_ms: Mapped[int]


class Commission(Base):
    """A commission held pending until the sale's return window closes.

    Returns reverse it in proportion to the refunded share of ``base_paid`` (decision
    0015): ``refunded_paid`` and ``reversed_points`` are running totals, never above
    ``base_paid`` and ``points``; ``commission_reversals`` holds one row per return.
    """

    __tablename__ = "commissions"
    __table_args__ = (
        UniqueConstraint("sale_id", "beneficiary_id", "level",
                         name="uq_commissions_sale_beneficiary"),
        Index("ix_commissions_status", "status", "settle_after_ms"),
    )

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    sale_id: Mapped[str] = mapped_column(EventKey)  # "<store>/<sale event id>"
    beneficiary_id: Mapped[str] = mapped_column(Id)
    buyer_id: Mapped[str | None] = mapped_column(Id)
    level: Mapped[int] = mapped_column(Integer)  # 1: the sharer; 2: who recruited them
    points: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))  # pending | settled | reversed
    created_ms: Mapped[int]
    settle_after_ms: Mapped[int]
    closed_ms: Mapped[int | None]
    # What the buyer paid (the commission's base); None on rows from before 0004, which
    # any return reverses entirely (the old rule).
    base_paid: Mapped[int | None]
    refunded_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    reversed_points: Mapped[int] = mapped_column(BigInteger, default=0)


class CommissionReversal(Base):
    """One return's effect on one commission; the key makes a redelivered refund a no-op."""

    __tablename__ = "commission_reversals"

    commission_id: Mapped[str] = mapped_column(Id, primary_key=True)
    refund_id: Mapped[str] = mapped_column(EventKey, primary_key=True)
    refunded_paid: Mapped[int]
    points: Mapped[int]
    created_ms: Mapped[int]


class JobLease(Base):
    """Which scheduler replica may run a job until when (``cloud.scheduler``).

    Claimed with ``UPDATE ... WHERE until_ms <= now``: of replicas racing for a due job,
    the database lets exactly one update the row.
    """

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(Id, primary_key=True)
    holder: Mapped[str | None] = mapped_column(Key)
    until_ms: Mapped[int]
    last_run_ms: Mapped[int | None]
    last_rows: Mapped[int | None]


class PromotionDef(Base):
    """An editable promotion: an engine promotion plus the cloud's scope."""

    __tablename__ = "promotions"

    promotion_id: Mapped[str] = mapped_column(Id, primary_key=True)
    definition: Mapped[dict[str, Any]]
    stores: Mapped[list[str]] = mapped_column(JSON)
    regions: Mapped[list[str]] = mapped_column(JSON)
    channels: Mapped[list[str]] = mapped_column(JSON)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_ms: Mapped[int]
    updated_ms: Mapped[int]


class PromotionPublication(Base):
    """An immutable published version: every entry with its resolved store list."""

    __tablename__ = "promotion_publications"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    currency: Mapped[str] = mapped_column(String(3))
    published_ms: Mapped[int]
    entries: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class PriceBookVersion(Base):
    """An immutable published price book: the chain's (``scope`` = ``*``) or one store's
    overrides (``scope`` = store id). Versions are one sequence across scopes, so the
    version a store gets (the newer of the two) only ever grows (``cloud.pricebook``)."""

    __tablename__ = "price_book_versions"
    __table_args__ = (Index("ix_price_book_versions_scope", "scope", "version"),)

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    scope: Mapped[str] = mapped_column(Id)
    currency: Mapped[str] = mapped_column(String(3))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    published_ms: Mapped[int]
    # When stores start charging it (decision 0047); None: as soon as they have it.
    effective_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class SalePriceMismatch(Base):
    """An audit finding on one sale (``cloud.promotions.reprice``), keyed by store, event
    id and reason: a sale may carry one pricing finding and a ``charged_differs`` one.

    ``kind``: ``mismatch`` (the cloud re-priced it and got other totals, or the money
    charged differs from the money recorded) or ``unaudited`` (it could not be re-priced).
    """

    __tablename__ = "sale_price_mismatches"
    __table_args__ = (Index("ix_sale_price_mismatches_store", "store_id", "detected_ms"),)

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    event_id: Mapped[str] = mapped_column(Id, primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), server_default="mismatch")
    device_id: Mapped[str | None] = mapped_column(Id)
    snapshot_version: Mapped[int | None]
    expected: Mapped[dict[str, Any] | None]
    reported: Mapped[dict[str, Any] | None]
    detected_ms: Mapped[int]


class SaleAudit(Base):
    """What the audit concluded about one sale (one row per ``sale`` event it saw).

    ``outcome``: ``audited`` (re-priced, totals equal), ``mismatch`` or ``unaudited``
    (``reason`` says why); ``paid`` is the sale's recorded ``totals.paid``, ``charged``
    what the tenders collected (None when the till does not say). The audit summary
    counts these rows; the findings themselves are ``SalePriceMismatch`` rows.
    """

    __tablename__ = "sale_audits"
    __table_args__ = (Index("ix_sale_audits_store", "store_id", "outcome"),)

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    event_id: Mapped[str] = mapped_column(Id, primary_key=True)
    device_id: Mapped[str | None] = mapped_column(Id)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    paid: Mapped[int | None]
    charged: Mapped[int | None]
    detected_ms: Mapped[int]
