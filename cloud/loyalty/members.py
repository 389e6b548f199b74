"""Members: created with minimal personal data, found by a keyed hash of the phone.

Why a keyed hash (HMAC-SHA256 with a server secret) rather than a plain hash: phone
numbers are a small space (about 10^10 per country), so an unkeyed sha256 of every
number can be computed in minutes and a leaked table would give every member's phone
back. With the key kept outside the database, the table alone reveals nothing, and a
lookup still needs only one hash.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import Member
from cloud.loyalty.errors import Conflict, NotConfigured, NotFound
from protocols.ids import uuid7

logger = logging.getLogger(__name__)

_NOT_DIGITS = re.compile(r"[^0-9]")


def normalise_phone(phone: str) -> str:
    """Digits only with a leading ``+`` kept as ``00``: ``+49 170-1`` == ``0049 1701``."""
    raw = phone.strip()
    digits = _NOT_DIGITS.sub("", raw)
    if raw.startswith("+"):
        digits = "00" + digits
    # 6..20 digits: shorter is no phone number, longer than E.164 allows plus prefix.
    if not 6 <= len(digits) <= 20:
        raise ValueError("phone must have 6-20 digits")
    return digits


def phone_hash(key: SecretStr | None, phone: str) -> str:
    if key is None:
        raise NotConfigured("member_hash_key (STOREFLEET_MEMBER_HASH_KEY)")
    digest = hmac.new(key.get_secret_value().encode(), normalise_phone(phone).encode(),
                      hashlib.sha256)
    return digest.hexdigest()


def get_member(session: Session, member_id: str, *, for_update: bool = False) -> Member:
    member = session.get(Member, member_id, with_for_update=for_update)
    if member is None:
        raise NotFound("member", member_id)
    return member


def find_by_phone(session: Session, phone: str, *, key: SecretStr | None) -> Member:
    member = session.scalar(select(Member).where(Member.phone_hash == phone_hash(key, phone)))
    if member is None:
        raise NotFound("member", "by phone")
    return member


def create_member(
    session: Session,
    *,
    now_ms: int,
    key: SecretStr | None,
    phone: str | None = None,
    referred_by: str | None = None,
    recruited_by: str | None = None,
    is_distributor: bool = False,
) -> Member:
    """A new member. ``referred_by``: who invited them (a referral); ``recruited_by``: the
    distributor who recruited them as a distributor (two-level distribution)."""
    hashed = phone_hash(key, phone) if phone is not None else None
    if hashed is not None and session.scalar(
        select(Member.member_id).where(Member.phone_hash == hashed)
    ):
        raise Conflict("a member with this phone number exists")
    for other in (referred_by, recruited_by):
        if other is not None:
            get_member(session, other)
    if recruited_by is not None and not get_member(session, recruited_by).is_distributor:
        raise Conflict(f"member {recruited_by} is not a distributor")
    member = Member(member_id=uuid7(now_ms), phone_hash=hashed, created_ms=now_ms,
                    referred_by=referred_by, recruited_by=recruited_by,
                    is_distributor=is_distributor)
    session.add(member)
    session.flush()  # the unique phone hash is checked here, inside the caller's transaction
    return member
