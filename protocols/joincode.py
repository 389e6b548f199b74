"""The join code: a shop assistant's signed QR that enrols a shopper at their store
(decision 0065).

    key = join_key(chain_secret)                                   # the cloud only
    text = make(key, store_id="S001", assistant_id="ann", expires_ms=...)
    code = verify(text, key=key, now_ms=now_ms)                    # JoinCode or JoinRefused

The assistant's page shows it as a QR; the shopper's phone scans it and the member app
hands the text to the cloud, which enrols the shopper with that store as home store
and that assistant as recruiter. Only the cloud makes and checks codes, so the key is
one key derived from the chain's member-code secret under its own label: a join code
is never a member code and the other way round.

Form: ``SFJ1.<payload>.<mac>``, payload the base64url of ``store|assistant|expires_s``
(``|`` is in no id, and ids may hold ``.``), mac HMAC-SHA256 over ``SFJ1.<payload>``
cut to 12 bytes (96 bits, as member codes). Expiry in seconds: a code is printed or
shown for hours to days, never milliseconds. About 60-90 characters: a small QR.

Refusals are ``JoinRefused`` with ``reason`` (a metric label): ``malformed``,
``forged`` (the mac does not match: edited, or another chain's), ``expired``.
The store and assistant named are checked by the cloud against its tables (an unknown
or retired assistant is refused there). Never raises anything else on any input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from protocols.errors import ProtocolError
from protocols.ids import valid_id

PREFIX = "SFJ1"
MAC_BYTES = 12  # 96 bits: a forger's guess is right once in 2^96
_LABEL = b"storefleet.staff-join/1"
_MAX_TEXT = 256  # the longest real code is ~200 (two 64-char ids); anything longer is junk
_MAX_EXPIRES_S = 10**11  # year 5138: beyond it the number is junk, not a date

REASONS = ("malformed", "forged", "expired")


class JoinRefused(ProtocolError):
    """A join code not accepted; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"join code refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class JoinCode:
    store_id: str
    assistant_id: str
    expires_ms: int


def join_key(secret: bytes) -> bytes:
    """The join codes' key, derived from the chain secret under its own label."""
    if len(secret) < 16:  # 128 bits at least, as for the member codes' day keys
        raise ValueError("the member code secret must have at least 16 bytes")
    return hmac.new(secret, _LABEL, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("empty or not ASCII")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, signed: str) -> bytes:
    return hmac.new(key, signed.encode(), hashlib.sha256).digest()[:MAC_BYTES]


def make(key: bytes, *, store_id: str, assistant_id: str, expires_ms: int) -> str:
    """A join code for ``assistant_id`` at ``store_id``, valid until ``expires_ms``
    (rounded down to the second)."""
    if not (valid_id(store_id) and valid_id(assistant_id)):
        raise ValueError("store and assistant must be ids")
    payload = _b64(f"{store_id}|{assistant_id}|{expires_ms // 1000}".encode())
    signed = f"{PREFIX}.{payload}"
    return f"{signed}.{_b64(_mac(key, signed))}"


def verify(text: str, *, key: bytes, now_ms: int) -> JoinCode:
    """The accepted code, or ``JoinRefused``. The mac is checked (in constant time)
    before the expiry: an edited expiry is ``forged``, not ``expired``."""
    text = text.strip()
    if len(text) > _MAX_TEXT:
        raise JoinRefused("malformed", f"longer than {_MAX_TEXT} characters")
    parts = text.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise JoinRefused("malformed", f"not an {PREFIX} code")
    try:
        mac = _unb64(parts[2])
        fields = _unb64(parts[1]).decode().split("|")
    except (binascii.Error, ValueError) as err:  # UnicodeDecodeError is a ValueError
        raise JoinRefused("malformed", f"not base64url text: {err}") from err
    if len(mac) != MAC_BYTES:
        raise JoinRefused("malformed", f"the mac has {len(mac)} bytes, not {MAC_BYTES}")
    if not hmac.compare_digest(mac, _mac(key, f"{PREFIX}.{parts[1]}")):
        raise JoinRefused("forged", "the mac does not match")
    # Signed by us: the fields below were written by make(); checked all the same.
    if len(fields) != 3 or not (valid_id(fields[0]) and valid_id(fields[1])) or not (
            fields[2].isascii() and fields[2].isdigit() and int(fields[2]) < _MAX_EXPIRES_S):
        raise JoinRefused("malformed", "the payload is not store|assistant|expiry")
    code = JoinCode(store_id=fields[0], assistant_id=fields[1],
                    expires_ms=int(fields[2]) * 1000)
    if now_ms >= code.expires_ms:
        raise JoinRefused("expired", f"expired at {code.expires_ms}, now {now_ms}")
    return code
