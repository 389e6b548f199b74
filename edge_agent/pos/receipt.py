"""The receipt the POS and online-order printing hand to ``PosPeripherals``.

Money is integer minor units of ``currency``; ``minor_digits`` says how many of them
make a major unit (2 for EUR/USD, 0 for JPY). The model checks that the lines add up
to the subtotal and the totals to the total, so a receipt never prints numbers that
disagree with each other.

What a shopper and an auditor look for besides the money: the store (name, address,
tax id), when (``issued_at``, in the store's time zone, the same instant as ``ts_ms``),
where and by whom (``till_id``, ``cashier``, ``sale_number``), and for a member's sale
the member's masked id, points earned and used and the balance after the sale (when
the till knows it; offline it is ``pending``: the cloud credits the points later).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


class ReceiptLine(_Model):
    name: str = Field(min_length=1, max_length=80)
    qty: int = Field(default=1, ge=1, le=100_000)
    unit_price: int
    amount: int  # qty * unit_price less line discounts, as priced by ``pricing``


class Adjustment(_Model):
    label: str = Field(min_length=1, max_length=40)
    amount: int  # negative for a discount


class Tender(_Model):
    method: str = Field(min_length=1, max_length=24)  # cash, card, stored_value, points
    amount: int = Field(ge=0)


class Totals(_Model):
    subtotal: int
    tax: int = 0  # included tax, shown for information
    total: int


class StoreHeader(_Model):
    name: str = Field(min_length=1, max_length=80)
    address: list[str] = Field(default_factory=list, max_length=6)
    tax_line: str | None = Field(default=None, max_length=80)  # "VAT ID DE123456789"


class MemberPoints(_Model):
    masked_id: str = Field(min_length=1, max_length=40)  # mask_id(member id)
    points_earned: int = Field(ge=0)
    points_used: int = Field(default=0, ge=0)
    balance: int | None = Field(default=None, ge=0)  # after this sale, when known
    pending: bool = False  # offline: the cloud credits the points later

    @model_validator(mode="after")
    def _pending_has_no_balance(self) -> MemberPoints:
        if self.pending and self.balance is not None:
            raise ValueError("a pending balance has no figure yet")
        return self


class Receipt(_Model):
    receipt_id: str = Field(min_length=1, max_length=64)
    ts_ms: int = Field(ge=0)
    store: StoreHeader | None = None
    issued_at: AwareDatetime | None = None  # ts_ms in the store's time zone
    till_id: str | None = Field(default=None, max_length=40)
    cashier: str | None = Field(default=None, max_length=40)
    sale_number: int | None = Field(default=None, ge=1)
    member: MemberPoints | None = None
    header: list[str] = Field(default_factory=list, max_length=8)
    lines: list[ReceiptLine] = Field(min_length=1, max_length=500)
    adjustments: list[Adjustment] = Field(default_factory=list, max_length=50)
    totals: Totals
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    minor_digits: int = Field(default=2, ge=0, le=3)
    tenders: list[Tender] = Field(default_factory=list, max_length=10)
    change: int = Field(default=0, ge=0)
    qr: str | None = Field(default=None, max_length=500)  # e.g. an e-receipt / survey URL
    barcode: str | None = Field(default=None, max_length=40)  # CODE128, for returns lookup
    footer: list[str] = Field(default_factory=list, max_length=8)

    @model_validator(mode="after")
    def _adds_up(self) -> Receipt:
        if self.issued_at is not None and \
                self.issued_at - _EPOCH != timedelta(milliseconds=self.ts_ms):
            raise ValueError("issued_at is not the instant ts_ms")
        if sum(line.amount for line in self.lines) != self.totals.subtotal:
            raise ValueError("lines do not add up to totals.subtotal")
        if self.totals.subtotal + sum(a.amount for a in self.adjustments) != self.totals.total:
            raise ValueError("subtotal plus adjustments is not totals.total")
        if self.tenders and sum(t.amount for t in self.tenders) - self.change != self.totals.total:
            raise ValueError("tenders less change do not pay totals.total")
        return self


def money(amount: int, *, minor_digits: int = 2) -> str:
    """Minor units as a decimal string without floats: 1234 -> "12.34", -5 -> "-0.05"."""
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 10**minor_digits)
    return f"{sign}{major}.{minor:0{minor_digits}d}" if minor_digits else f"{sign}{major}"


def mask_id(member_id: str) -> str:
    """A member id as a receipt shows it: the last characters only, never more than
    half of them (a lost receipt must not give the card away): "M0004" -> "***04"."""
    keep = min(4, len(member_id) // 2)
    # at most 4 stars: a long id (a uuid) still fits the 42-column row beside its label
    return "*" * min(4, len(member_id) - keep) + member_id[len(member_id) - keep:]

