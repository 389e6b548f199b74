"""Smart-cart messages on the store-local bus (``store/cart/{cart_id}/{up|down}/{type}``).

=============  ====  ========================================================  =====
type           dir   model                                                     QoS
=============  ====  ========================================================  =====
``state``      up    ``DeviceState`` (retained; Last Will = offline)            1
``tele``       up    ``Telemetry`` (battery_pct ...)                             0
``session``    up    ``CartSessionMsg``: start (anonymous / member QR) or end   1
``scan``       up    ``CartScan``: BLE beacons heard (key + RSSI), ~5 Hz         0
``item``       up    ``CartItem``: a barcode scanned into / out of the basket   1
``ack``        up    ``ScreenAck``: a screen message was shown                  1
``screen``     down  ``ScreenMessage``: text for the cart's screen, ``msg_id``   1
=============  ====  ========================================================  =====

Beacons are named by their advertised identity (``protocols.ble`` keys). Member QR
codes are ``SFM:{member_id}`` (``member_from_qr``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field

from protocols.ids import Id
from protocols.messages import EpochMs, Msg

CART_KIND = "cart"
MEMBER_QR_PREFIX = "SFM:"
_MEMBER_RE = re.compile(r"^SFM:([A-Za-z0-9][A-Za-z0-9_-]{0,31})$")

BeaconKey = Annotated[str, Field(min_length=1, max_length=96)]
Barcode = Annotated[str, Field(pattern=r"^[0-9]{6,14}$")]  # EAN-8/13, UPC-A, GTIN-14


class CartSessionMsg(Msg):
    v: Literal[1] = 1
    session_id: Id
    action: Literal["start", "end"]
    member_qr: str | None = Field(default=None, max_length=128)
    ts: EpochMs


class BeaconReading(Msg):
    beacon: BeaconKey
    rssi: int = Field(ge=-127, le=20)  # dBm; BLE RSSI is a signed byte, 127 = unknown


class CartScan(Msg):
    v: Literal[1] = 1
    ts: EpochMs
    session_id: Id | None = None
    readings: list[BeaconReading] = Field(max_length=32)


class CartItem(Msg):
    v: Literal[1] = 1
    ts: EpochMs
    session_id: Id
    barcode: Barcode
    qty: int = Field(default=1, ge=-99, le=99)  # negative: taken out of the basket


class ScreenMessage(Msg):
    v: Literal[1] = 1
    msg_id: Id
    ts: EpochMs
    kind: Annotated[str, Field(max_length=32)] = "info"  # info | coupon | alert ...
    title: Annotated[str, Field(max_length=80)]
    body: Annotated[str, Field(max_length=500)] = ""


class ScreenAck(Msg):
    v: Literal[1] = 1
    msg_id: Id
    ts: EpochMs
    status: Literal["shown", "dismissed"] = "shown"


def member_from_qr(qr: str | None) -> str | None:
    """The member id in a member-card QR payload, or None (anonymous / not ours)."""
    if qr is None:
        return None
    match = _MEMBER_RE.match(qr)
    return match.group(1) if match else None
