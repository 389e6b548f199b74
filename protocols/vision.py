"""Vision messages: cart camera snapshots in, recognised product categories out.

==============================  ====  =====================================================
``store/cart/{id}/up/snapshot``  up    ``CartSnapshot`` (JSON, JPEG base64) or raw JPEG bytes
(agent-internal)                 -     ``CategorySeen``: a product category recognised
==============================  ====  =====================================================

A cart's camera sees what the shopper picks up or puts in the basket. The cart publishes
one JPEG per "something moved in the basket" moment, either as raw bytes (cheap cameras
that cannot build JSON) or as a ``CartSnapshot`` JSON document that also carries the
session and a snapshot id. ``decode_snapshot`` accepts both: a payload that starts with
the JPEG start-of-image marker is raw, anything else must be the JSON document.

``CategorySeen`` is what the store box's classifier produces for the coupon-trigger
engine (a related coupon) and for "seen but not scanned" checks against ``CartItem``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import Field

from protocols.codec import decode
from protocols.errors import DecodeError
from protocols.ids import Id
from protocols.messages import EpochMs, Msg

SNAPSHOT = "snapshot"
JPEG_SOI = b"\xff\xd8"  # every JPEG starts with the start-of-image marker

# 512 KiB of JPEG: a 1280x720 snapshot at quality 90 is about 150 KiB; a bigger image
# is a misconfigured camera, and decoding it would cost the store box time for nothing.
SNAPSHOT_MAX_JPEG = 512 * 1024
# base64 grows 4/3, plus a little room for the other JSON fields.
SNAPSHOT_MAX_PAYLOAD = SNAPSHOT_MAX_JPEG * 4 // 3 + 4096

# The categories the shipped model knows (models/vision). The coupon-trigger engine keys
# its rules by these names; a model with other labels is refused at load time.
PRODUCT_CATEGORIES: tuple[str, ...] = (
    "beverage_can",
    "bottle",
    "cereal_box",
    "milk_carton",
    "fruit",
    "snack_bag",
    "detergent",
    "bread",
    "egg_carton",
    "yogurt_cup",
)


class CartSnapshot(Msg):
    """JSON form of a cart snapshot. ``jpeg_b64`` is standard base64 (RFC 4648)."""

    v: Literal[1] = 1
    snapshot_id: Id
    session_id: Id | None = None
    ts: EpochMs
    content_type: Literal["image/jpeg"] = "image/jpeg"
    jpeg_b64: str = Field(min_length=4, max_length=SNAPSHOT_MAX_JPEG * 4 // 3 + 4)


class CategorySeen(Msg):
    """A product category recognised in one frame from one source."""

    v: Literal[1] = 1
    id: Id
    source: Id  # cart id for snapshots, camera id for streams
    category: Id
    confidence: float = Field(ge=0.0, le=1.0)
    ts: EpochMs  # when the frame was taken (snapshot ts or capture time)
    snapshot_id: Id | None = None
    session_id: Id | None = None
    model: str = Field(max_length=64)  # model name@version, for audits of what fired


def decode_snapshot(payload: bytes | bytearray) -> tuple[bytes, CartSnapshot | None]:
    """Return ``(jpeg bytes, metadata)``; metadata is None for a raw-JPEG payload.

    Raises ``DecodeError`` (``too_large``, ``not_json``, ``invalid_field``,
    ``missing_field``, ``bad_base64``). The JPEG itself is not decoded here (no image
    library in protocols): ``bad_jpeg`` is the classifier's to report.
    """
    raw = bytes(payload)
    if raw.startswith(JPEG_SOI):
        if len(raw) > SNAPSHOT_MAX_JPEG:
            raise DecodeError("too_large", f"{len(raw)} bytes > cap of {SNAPSHOT_MAX_JPEG}")
        return raw, None
    meta = decode(raw, CartSnapshot, max_bytes=SNAPSHOT_MAX_PAYLOAD)
    try:
        jpeg = base64.b64decode(meta.jpeg_b64, validate=True)
    except (binascii.Error, ValueError) as err:
        raise DecodeError("bad_base64", str(err), field="jpeg_b64") from err
    if len(jpeg) > SNAPSHOT_MAX_JPEG:
        raise DecodeError("too_large", f"{len(jpeg)} bytes > cap of {SNAPSHOT_MAX_JPEG}")
    return jpeg, meta


def encode_snapshot(
    jpeg: bytes, *, snapshot_id: str, ts: int, session_id: str | None = None
) -> bytes:
    """The JSON form, for simulators and tests."""
    msg = CartSnapshot(
        snapshot_id=snapshot_id,
        session_id=session_id,
        ts=ts,
        jpeg_b64=base64.b64encode(jpeg).decode("ascii"),
    )
    return msg.model_dump_json().encode()
