"""The member code: a signed, rotating QR a member's phone shows (decision 0064).

    key = day_key(chain_secret, member_id, day=day_of(now_ms))   # the cloud derives it
    text = make(key, member_id, now_ms=now_ms)                    # the phone, every 30 s
    member = verify(text, keys=lookup, now_ms=now_ms, guard=guard)  # till, cart, cabinet

Like a payment code (TOTP, RFC 6238): an HMAC-SHA256 over the member id and a 30 s
time step, cut to 12 bytes (96 bits: a forger's guess is right once in 2^96), written
``SFM2.<member_id>.<step>.<mac>`` (base64url, no padding), e.g.
``SFM2.0193a1b2-....<57_000_000>.Xy3...``; about 75 characters, a version-3 QR.

Keys have a small blast radius. The chain's secret stays in the cloud. From it, the
cloud derives a key per member per UTC day (``day_key``); the member's app gets today's
and tomorrow's key from the cloud API, and a store box gets only the day keys of the
members in its member snapshot. A stolen phone key signs codes for one member for one
day; a stolen box gives the keys of that store's members for two days; neither gives
the secret or any other member's key.

A code is accepted within ``window`` steps of the verifier's clock either way (±1 step:
a code shown at the end of its 30 s still scans; a phone or box clock off by up to
30 s still agrees). Each (member, step) is accepted once per verifier (``ReplayGuard``):
a photographed code cannot be shown again at another lane of the same box.

Refusals are ``CodeRefused`` with ``reason`` (a metric label): ``malformed``,
``legacy_disabled``, ``expired`` (older than the window), ``not_yet_valid`` (newer:
a fast clock), ``unknown_member`` (no key for that member and day), ``forged`` (the mac
does not match), ``replayed``.

The old unsigned ``SFM:<member_id>`` form (the cart screens' demo sample data) is
accepted only where the caller says ``legacy=True``; nothing signs it, so anyone can
type anyone's id. It is for the demo's sample members, never for real ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from protocols.errors import ProtocolError

PREFIX = "SFM2"
LEGACY_PREFIX = "SFM:"
STEP_MS = 30_000  # 30 s, as TOTP authenticators and payment codes use
DAY_MS = 86_400_000
WINDOW = 1  # steps either way: the end of a shown code's life and 30 s of clock skew
MAC_BYTES = 12  # 96 bits: no guessing within a code's 90 s life
# A day key: HMAC-SHA256 cut to 128 bits, enough for an HMAC key, and 22 characters in
# the store's member snapshot (a store's members ride inline in its content manifest).
KEY_BYTES = 16
_MAX_ID = 64  # protocols.ids: ids are at most 64 characters
_DAY_LABEL = b"storefleet.member-day/1"
_CODE_LABEL = b"storefleet.member-code/2"

REASONS = ("malformed", "legacy_disabled", "expired", "not_yet_valid", "unknown_member",
           "forged", "replayed")


class CodeRefused(ProtocolError):
    """A member code not accepted; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str, *, member_id: str | None = None) -> None:
        super().__init__(f"member code refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail
        self.member_id = member_id


@dataclass(frozen=True, slots=True)
class MemberCode:
    member_id: str
    step: int
    mac: bytes
    legacy: bool = False


def step_of(ms: int) -> int:
    return ms // STEP_MS


def day_of(ms: int) -> int:
    """The UTC day number (days since 1970-01-01) of a time in ms."""
    return ms // DAY_MS


def day_of_step(step: int) -> int:
    return (step * STEP_MS) // DAY_MS  # 2,880 steps a day: a step never spans midnight


def day_key(secret: bytes, member_id: str, *, day: int) -> bytes:
    """The member's key for one UTC day (the cloud's side: needs the chain secret)."""
    if len(secret) < 16:  # 128 bits at least: the whole chain's codes hang on it
        raise ValueError("the member code secret must have at least 16 bytes")
    message = b"|".join((_DAY_LABEL, member_id.encode(), str(day).encode()))
    return hmac.new(secret, message, hashlib.sha256).digest()[:KEY_BYTES]


def mac_of(key: bytes, member_id: str, step: int) -> bytes:
    message = b"|".join((_CODE_LABEL, member_id.encode(), str(step).encode()))
    return hmac.new(key, message, hashlib.sha256).digest()[:MAC_BYTES]


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode()


def decode_key(text: str) -> bytes:
    """A day key as the snapshot and the app carry it (base64url); ``ValueError``."""
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"not a base64url key: {err}") from err
    if len(key) != KEY_BYTES:
        raise ValueError(f"a day key has {KEY_BYTES} bytes, not {len(key)}")
    return key


def make(key: bytes, member_id: str, *, now_ms: int) -> str:
    """The code a phone shows now (the app's side; also the tests' and the demo's)."""
    step = step_of(now_ms)
    return f"{PREFIX}.{member_id}.{step}.{encode_key(mac_of(key, member_id, step))}"


def _valid_id(member_id: str) -> bool:
    return 0 < len(member_id) <= _MAX_ID and member_id.isascii() and all(
        c.isalnum() or c in "-_:" for c in member_id)


def parse(text: str) -> MemberCode:
    """The parts of a scanned code (no check of its mac); ``CodeRefused('malformed')``.
    Never raises anything else, whatever the scanner read."""
    text = text.strip()
    if text.startswith(LEGACY_PREFIX):
        member_id = text[len(LEGACY_PREFIX):]
        if not _valid_id(member_id):
            raise CodeRefused("malformed", "SFM: code without a valid member id")
        return MemberCode(member_id=member_id, step=0, mac=b"", legacy=True)
    parts = text.split(".")
    if len(parts) != 4 or parts[0] != PREFIX:
        raise CodeRefused("malformed", f"not an {PREFIX} code")
    _, member_id, step_text, mac_text = parts
    if not _valid_id(member_id):
        raise CodeRefused("malformed", "no valid member id")
    if not (step_text.isascii() and step_text.isdigit()) or len(step_text) > 12:
        raise CodeRefused("malformed", "the time step is not a number", member_id=member_id)
    try:
        mac = base64.urlsafe_b64decode(mac_text + "=" * (-len(mac_text) % 4))
    except (binascii.Error, ValueError) as err:
        raise CodeRefused("malformed", f"the mac is not base64url: {err}",
                          member_id=member_id) from err
    if len(mac) != MAC_BYTES:
        raise CodeRefused("malformed", f"the mac has {len(mac)} bytes, not {MAC_BYTES}",
                          member_id=member_id)
    return MemberCode(member_id=member_id, step=int(step_text), mac=mac)


class ReplayGuard:
    """The (member, step) pairs a verifier accepted within the window: each once.

    Bounded by time, not by a count: pairs older than the window are dropped at each
    check, so it holds at most the codes accepted in the last ``2 * window + 1`` steps
    (90 s of a box's scans)."""

    def __init__(self, *, window: int = WINDOW) -> None:
        self.window = window
        self._seen: dict[tuple[str, int], None] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def _purge(self, now_step: int) -> None:
        oldest = now_step - self.window
        for pair in [p for p in self._seen if p[1] < oldest]:
            del self._seen[pair]

    def seen(self, member_id: str, step: int, *, now_ms: int) -> bool:
        self._purge(step_of(now_ms))
        return (member_id, step) in self._seen

    def accept(self, member_id: str, step: int, *, now_ms: int) -> None:
        self._purge(step_of(now_ms))
        self._seen[(member_id, step)] = None


KeyLookup = Callable[[str, int], bytes | None]
"""``(member_id, day) -> that member's key for that day``, or None when unknown."""


def verify(text: str, *, keys: KeyLookup, now_ms: int, guard: ReplayGuard,
           legacy: bool = False) -> MemberCode:
    """The accepted code (its member id), or ``CodeRefused`` with the reason.

    Checks in an order that tells the truth cheaply: the form, the time (before any
    key), the key and mac (compared in constant time), and last the replay, so a forged
    code is never remembered and cannot lock out the real member's step."""
    code = parse(text)
    if code.legacy:
        if not legacy:
            raise CodeRefused("legacy_disabled", "unsigned SFM: codes are not accepted "
                              "here (demo sample data only)", member_id=code.member_id)
        return code
    now_step = step_of(now_ms)
    if code.step < now_step - guard.window:
        raise CodeRefused("expired", f"step {code.step}, now {now_step}",
                          member_id=code.member_id)
    if code.step > now_step + guard.window:
        raise CodeRefused("not_yet_valid", f"step {code.step}, now {now_step}",
                          member_id=code.member_id)
    key = keys(code.member_id, day_of_step(code.step))
    if key is None:
        raise CodeRefused("unknown_member", f"no key for member {code.member_id} on day "
                          f"{day_of_step(code.step)}", member_id=code.member_id)
    if not hmac.compare_digest(code.mac, mac_of(key, code.member_id, code.step)):
        raise CodeRefused("forged", "the mac does not match", member_id=code.member_id)
    if guard.seen(code.member_id, code.step, now_ms=now_ms):
        raise CodeRefused("replayed", f"step {code.step} of member {code.member_id} was "
                          "already accepted here", member_id=code.member_id)
    guard.accept(code.member_id, code.step, now_ms=now_ms)
    return code
