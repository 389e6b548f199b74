"""A store's offline member snapshot: the ``members`` document of its content manifest
(decision 0064).

The cloud builds one per store (``cloud.loyalty.store_snapshot``): the members whose
home store it is and those seen there recently, each with tier, points balance, stored
value, active coupons and the member's day keys (``protocols.membercode``), so the box
can check a member code and cap spends with the cloud away. It rides inline in the
store's signed content manifest (the signature is the manifest's), so the box takes it
only from a manifest a trusted key signed for this store.

Phones are never in it. ``phone`` is ``sha256(salt || phone_hash)`` cut to 16 bytes,
where ``phone_hash`` is the cloud's keyed hash of the phone (``cloud.loyalty.members``)
and ``salt`` is drawn for each snapshot: a box that holds the phone hash key can find a
member by phone (``phone_entry``); a copied snapshot cannot be joined to another
store's or to the cloud's table.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocols.ids import Id

DOCUMENT = "members"  # the manifest's document key
SALT_BYTES = 16
PHONE_BYTES = 16  # 128 bits: no two of a store's members collide


class CouponHeld(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(min_length=1, max_length=64)
    engine_code: str = Field(min_length=1, max_length=64)  # the promotion it applies
    expires_ms: int = Field(ge=0)


class SnapshotMember(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tier: str | None = None
    points: int  # may be negative: an offline spend the balance did not cover
    stored_value: int  # minor units
    coupons: tuple[CouponHeld, ...] = ()
    phone: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    keys: dict[str, str] = Field(default_factory=dict, max_length=3)  # UTC day -> key
    home: bool = False  # home store (else: seen here recently)


class MemberSnapshot(BaseModel):
    """The ``members`` document."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    version: str = Field(min_length=1, max_length=64)  # the builder's time, as text
    store_id: Id
    created_ms: int = Field(ge=0)
    salt: str = Field(pattern=r"^[0-9a-f]{32}$")
    members: dict[Id, SnapshotMember] = Field(default_factory=dict)
    # Members the store should have had but that did not fit (largest stores): the box
    # asks the cloud for them while it is reachable.
    omitted: int = Field(default=0, ge=0)


_NOT_DIGITS = re.compile(r"[^0-9]")


def phone_hash(key: bytes, phone: str) -> str:
    """The cloud's keyed hash of a phone (``cloud.loyalty.members.phone_hash``, the same
    normalisation: digits only, a leading ``+`` as ``00``), for a box that holds the key
    (``[members] phone_key``); ``ValueError`` for no phone number."""
    raw = phone.strip()
    digits = _NOT_DIGITS.sub("", raw)
    if raw.startswith("+"):
        digits = "00" + digits
    if not 6 <= len(digits) <= 20:  # as the cloud: 6..20 digits
        raise ValueError("phone must have 6-20 digits")
    return hmac.new(key, digits.encode(), hashlib.sha256).hexdigest()


def phone_entry(salt: str, phone_hash: str) -> str:
    """The snapshot's key for a phone, from the cloud's keyed hash of it."""
    return hashlib.sha256(bytes.fromhex(salt) + phone_hash.encode()).hexdigest()[
        :2 * PHONE_BYTES]


def as_document(snapshot: MemberSnapshot) -> dict[str, Any]:
    """The document as the manifest carries it: defaults left out (a store's members
    ride inline, every byte counts), read back by ``MemberSnapshot.model_validate``."""
    return snapshot.model_dump(mode="json", exclude_defaults=True) | {"v": snapshot.v}
