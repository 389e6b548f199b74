"""Cabinet pickup: an online order collected from one door of a vending cabinet
(decision 0066). Pure: the code, the downlink and the status report; no I/O.

    msg = signed_message(store_id=, cabinet_id=, door=, order_id=, expires_ms=)
    text = make_code(order_id, expires_ms, signature=cloud_key.sign(msg))   # the cloud
    order_id, expires_ms, sig = parse_code(text)                            # the box
    check_code(text, reservation, keys=trusted, now_ms=now)                 # the box

The code is ``SFP1.<order_id>.<expires_s>.<sig>``: the Ed25519 signature (base64url,
86 characters) of the cloud's signing key, the key the box already trusts for its
content manifests, over the store, cabinet, door, order and expiry. About 140
characters: a version-7 QR, and one ``CODE_ENTERED`` frame of the cabinet. The order id
is not a secret (it is on receipts and in the API); the signature is. The store box
verifies it with the cloud's public key only: a stolen box can check codes but not
make one, and no shared secret leaves the cloud. Ed25519 signatures are deterministic,
so the cloud gives the same code again for the same reservation (a retried order).

Downlink: ``PickupDispatch`` on ``sf/v1/{store}/cmd/pickups`` (``topic``), QoS 1, not
retained (the ``cmd/#`` permission every store has; ``pickups`` is a reserved target as
``orders`` is). Uplink: a ``cabinet_pickup`` event per change (``PickupStatusData``),
through the box's outbox; event id ``pickup-<order>-<status>``, so a repeated report is
one event.

States (``PickupState``): ``reserved`` (the cloud's: a door held, the order sent),
``ready`` (the box holds it: its code opens the door), ``picked_up`` (the door was read
back open after a valid code), ``expired`` (not collected before ``expires_ms``; the
door's goods are sellable again). The order's own status follows: ready -> ``ready``,
picked_up -> ``handed_over``, expired -> ``cancelled``.

Refusals at the cabinet (``REASONS``, metric labels): ``malformed``, ``unknown_order``
(no such pickup held by this box), ``forged`` (no trusted key signed exactly this),
``expired``, ``used`` (already collected or being collected), ``wrong_cabinet``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field

from protocols import topics
from protocols.errors import ProtocolError
from protocols.ids import Id, check_id, valid_id
from protocols.messages import EpochMs, Msg

PREFIX = "SFP1"
TARGET = "pickups"  # cmd/pickups: reserved, like cmd/orders
KIND = "cabinet_pickup"  # the uplink event kind
SIG_BYTES = 64  # Ed25519
_LABEL = b"storefleet.pickup/1"
REASONS = ("malformed", "unknown_order", "forged", "expired", "used", "wrong_cabinet")

PickupState = Literal["reserved", "ready", "picked_up", "expired"]
# What the order's status becomes when the box reports a pickup state.
ORDER_STATUS: dict[str, str] = {"ready": "ready", "picked_up": "handed_over",
                                "expired": "cancelled"}
# Legal moves of a pickup; the box reports each once, the cloud applies them once.
# ``expired -> picked_up``: only after the cloud's own sweep (a box offline past the
# grace, which opened the door in time by its clock): the box's word on a door wins.
TRANSITIONS: dict[str, frozenset[str]] = {
    "reserved": frozenset({"ready", "picked_up", "expired"}),
    "ready": frozenset({"picked_up", "expired"}),
    "expired": frozenset({"picked_up"}),
}


class PickupRefused(ProtocolError):
    """A pickup code not accepted; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"pickup code refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


def topic(store_id: str) -> str:
    return topics.cmd(store_id, TARGET)


def event_id(order_id: str, status: str) -> str:
    plain = f"pickup-{order_id}-{status}"
    if len(plain) <= 64:
        return plain
    return f"pickup-{hashlib.sha256(order_id.encode()).hexdigest()[:24]}-{status}"


def signed_message(*, store_id: str, cabinet_id: str, door: int, order_id: str,
                   expires_ms: int) -> bytes:
    """The bytes the cloud signs: everything the code may open, and until when."""
    parts = (check_id(store_id, "store id"), check_id(cabinet_id, "cabinet id"),
             str(int(door)), check_id(order_id, "order id"), str(expires_ms // 1000))
    return _LABEL + b"|" + "|".join(parts).encode()


def make_code(order_id: str, expires_ms: int, *, signature: bytes) -> str:
    if len(signature) != SIG_BYTES:
        raise ValueError(f"an Ed25519 signature is {SIG_BYTES} bytes")
    sig = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return f"{PREFIX}.{check_id(order_id, 'order id')}.{expires_ms // 1000}.{sig}"


def parse_code(text: str) -> tuple[str, int, bytes]:
    """(order id, expiry in ms, signature); ``PickupRefused("malformed")`` otherwise."""
    parts = text.strip().split(".")
    if len(parts) != 4 or parts[0] != PREFIX:
        raise PickupRefused("malformed", "not an SFP1 pickup code")
    _, order_id, exp, sig = parts
    if not valid_id(order_id) or not exp.isdigit() or len(exp) > 12:
        raise PickupRefused("malformed", "bad order id or expiry")
    try:
        raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except (binascii.Error, ValueError) as err:
        raise PickupRefused("malformed", f"signature is not base64url: {err}") from err
    if len(raw) != SIG_BYTES:
        raise PickupRefused("malformed", f"signature of {len(raw)} bytes")
    return order_id, int(exp) * 1000, raw


@dataclass(frozen=True, slots=True)
class Reservation:
    """What the box holds of a pickup (from its ``PickupDispatch``)."""

    store_id: str
    cabinet_id: str
    door: int
    order_id: str
    expires_ms: int


def check_code(text: str, held: Mapping[str, Reservation], *,
               keys: Mapping[str, Ed25519PublicKey], now_ms: int,
               cabinet_id: str) -> Reservation:
    """The reservation a code opens at ``cabinet_id`` now, or ``PickupRefused``.

    Whether it was used already is the holder's to say (it keeps the state); this
    checks form, reservation, signature, expiry and cabinet, in that order, so an
    expired or misplaced code is told apart only once it is known to be genuine."""
    order_id, expires_ms, sig = parse_code(text)
    found = held.get(order_id)
    if found is None:
        raise PickupRefused("unknown_order", f"no pickup of order {order_id} at this store")
    msg = signed_message(store_id=found.store_id, cabinet_id=found.cabinet_id,
                         door=found.door, order_id=order_id, expires_ms=expires_ms)
    if not _signed_by_any(sig, msg, keys):
        raise PickupRefused("forged", f"order {order_id}: no trusted key signed this code")
    if now_ms >= min(expires_ms, found.expires_ms):
        raise PickupRefused("expired", f"order {order_id}: expired")
    if found.cabinet_id != cabinet_id:
        raise PickupRefused("wrong_cabinet", f"order {order_id} waits in cabinet "
                            f"{found.cabinet_id}, not {cabinet_id}")
    return found


def _signed_by_any(sig: bytes, msg: bytes, keys: Mapping[str, Ed25519PublicKey]) -> bool:
    for key in keys.values():  # a handful at most: the current key and one in rotation
        try:
            key.verify(sig, msg)
        except InvalidSignature:
            continue
        return True
    return False


class PickupLine(Msg):
    sku: Id
    qty: int = Field(ge=1, le=10_000)


class PickupDispatch(Msg):
    """A pickup as the store box receives it (``cmd/pickups``); the order id is the key."""

    v: Literal[1] = 1
    order_id: Id
    store_id: Id
    cabinet_id: Id
    door: int = Field(ge=0, lt=16)  # the lock board's 16 doors
    lines: list[PickupLine] = Field(min_length=1, max_length=20)
    member_id: Id | None = None
    expires_ms: EpochMs
    ts: EpochMs


class PickupStatusData(Msg):
    """``Event.data`` of a ``cabinet_pickup`` event."""

    v: Literal[1] = 1
    order_id: Id
    cabinet_id: Id
    door: int = Field(ge=0, lt=16)
    status: PickupState
    ts: EpochMs
    reason: str | None = Field(default=None, max_length=200)
