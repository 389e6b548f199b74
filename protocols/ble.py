"""BLE beacon advertisements: iBeacon and Eddystone (UID, URL, TLM). Pure, no I/O.

    parse_advertisement(bytes.fromhex("0201061aff4c000215...")) -> [IBeacon(...)]

An advertisement is a run of AD structures ``[len][type][data...]`` (Bluetooth Core
Spec Vol 3 Part C §11). We read two of them:

- manufacturer specific data (type 0xFF) from Apple (company 0x004C) with the iBeacon
  prefix ``02 15``: 16-byte proximity UUID, major, minor (big-endian), measured power
  (signed dBm at 1 m);
- service data (type 0x16) for the Eddystone service UUID 0xFEAA: frame 0x00 = UID,
  0x10 = URL, 0x20 = TLM (unencrypted, version 0).

Beacons are keyed by what they advertise (``ibeacon:{uuid}:{major}:{minor}``,
``eddystone:{namespace}:{instance}``), never by the MAC address: phones and many beacons
rotate random addresses, and one beacon module may host several identities.

Parsing never raises on bad input: a truncated structure, an unknown company, service
or frame type yields nothing for that structure (``parse_advertisement`` returns the
frames it could read). Callers count the empties as garbage.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

AD_FLAGS = 0x01
AD_COMPLETE_16 = 0x03  # complete list of 16-bit service UUIDs
AD_SERVICE_DATA_16 = 0x16
AD_MANUFACTURER = 0xFF

APPLE_COMPANY_ID = 0x004C
IBEACON_PREFIX = b"\x02\x15"  # iBeacon type 0x02, remaining length 0x15 (21 bytes)
EDDYSTONE_UUID16 = 0xFEAA

FRAME_UID = 0x00
FRAME_URL = 0x10
FRAME_TLM = 0x20

# Eddystone advertises its TX power as measured at 0 m; iBeacon (and our distance
# model) use the power at 1 m. Free-space path loss at 1 m for 2.4 GHz is about
# 41 dB (20*log10(4*pi*1 m / 0.125 m) = 40.0 dB, plus antenna losses), which is the
# figure Google's Eddystone spec gives for converting between the two.
EDDYSTONE_0M_TO_1M_DB = 41

# Eddystone-URL scheme prefixes and expansion codes (Eddystone-URL spec).
_URL_SCHEMES = ("http://www.", "https://www.", "http://", "https://")
_URL_EXPANSIONS = (
    ".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/",
    ".com", ".org", ".edu", ".net", ".info", ".biz", ".gov",
)

_BT_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"  # Bluetooth Base UUID for 16-bit UUIDs


@dataclass(frozen=True, slots=True)
class IBeacon:
    uuid: str
    major: int
    minor: int
    power_1m: int  # measured power, dBm at 1 m

    @property
    def key(self) -> str:
        return f"ibeacon:{self.uuid}:{self.major}:{self.minor}"


@dataclass(frozen=True, slots=True)
class EddystoneUID:
    namespace: str  # 10 bytes, hex
    instance: str  # 6 bytes, hex
    tx_power_0m: int

    @property
    def power_1m(self) -> int:
        return self.tx_power_0m - EDDYSTONE_0M_TO_1M_DB

    @property
    def key(self) -> str:
        return f"eddystone:{self.namespace}:{self.instance}"


@dataclass(frozen=True, slots=True)
class EddystoneURL:
    url: str
    tx_power_0m: int

    @property
    def power_1m(self) -> int:
        return self.tx_power_0m - EDDYSTONE_0M_TO_1M_DB


@dataclass(frozen=True, slots=True)
class EddystoneTLM:
    battery_mv: int  # 0 = not supported by the beacon
    temperature_c: float | None  # None when the beacon reports 0x8000 (not supported)
    adv_count: int
    uptime_ds: int  # time since power-up, 0.1 s units

    @property
    def uptime_s(self) -> float:
        return self.uptime_ds / 10


Frame = IBeacon | EddystoneUID | EddystoneURL | EddystoneTLM


def ad_structures(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """(AD type, data) of each well-formed structure; stops at the first malformed one."""
    i = 0
    while i < len(raw):
        length = raw[i]
        if length == 0:  # zero padding ends the significant part
            return
        end = i + 1 + length
        if end > len(raw):
            return
        yield raw[i + 1], bytes(raw[i + 2 : end])
        i = end


def parse_advertisement(raw: bytes) -> list[Frame]:
    """Every beacon frame in one advertisement (or scan response); [] if none."""
    frames: list[Frame] = []
    for ad_type, data in ad_structures(raw):
        frame: Frame | None = None
        if ad_type == AD_MANUFACTURER and len(data) >= 2:
            company = int.from_bytes(data[:2], "little")
            frame = parse_manufacturer(company, data[2:])
        elif ad_type == AD_SERVICE_DATA_16 and len(data) >= 2:
            frame = parse_service_data(int.from_bytes(data[:2], "little"), data[2:])
        if frame is not None:
            frames.append(frame)
    return frames


def parse_manufacturer(company_id: int, data: bytes) -> IBeacon | None:
    """iBeacon from manufacturer data (without the company id), else None."""
    if company_id != APPLE_COMPANY_ID or len(data) != 23 or data[:2] != IBEACON_PREFIX:
        return None
    beacon_uuid = str(uuid.UUID(bytes=bytes(data[2:18])))
    major, minor, power = struct.unpack(">HHb", data[18:23])
    return IBeacon(uuid=beacon_uuid, major=major, minor=minor, power_1m=power)


def parse_service_data(uuid16: int, data: bytes) -> Frame | None:
    """An Eddystone frame from 16-bit service data (without the UUID), else None."""
    if uuid16 != EDDYSTONE_UUID16 or not data:
        return None
    frame_type = data[0]
    if frame_type == FRAME_UID and len(data) in (18, 20):  # 2 reserved bytes are optional
        (tx,) = struct.unpack(">b", data[1:2])
        return EddystoneUID(namespace=data[2:12].hex(), instance=data[12:18].hex(), tx_power_0m=tx)
    if frame_type == FRAME_URL and 3 <= len(data) <= 20:
        return _parse_url(data)
    if frame_type == FRAME_TLM and len(data) == 14 and data[1] == 0x00:  # version 0
        vbatt, temp_raw, adv_cnt, sec_cnt = struct.unpack(">HhII", data[2:14])
        # 8.8 signed fixed point; 0x8000 (-128.0) means "not supported".
        temperature = None if temp_raw == -0x8000 else temp_raw / 256
        return EddystoneTLM(
            battery_mv=vbatt, temperature_c=temperature, adv_count=adv_cnt, uptime_ds=sec_cnt
        )
    return None


def _parse_url(data: bytes) -> EddystoneURL | None:
    (tx,) = struct.unpack(">b", data[1:2])
    scheme = data[2]
    if scheme >= len(_URL_SCHEMES):
        return None
    parts = [_URL_SCHEMES[scheme]]
    for byte in data[3:]:
        if byte < len(_URL_EXPANSIONS):
            parts.append(_URL_EXPANSIONS[byte])
        elif 0x21 <= byte <= 0x7E:  # printable ASCII; anything else is not a URL
            parts.append(chr(byte))
        else:
            return None
    return EddystoneURL(url="".join(parts), tx_power_0m=tx)


# ---- building advertisements (simulators, and bleak's pre-parsed data) ---------------


def ad(ad_type: int, data: bytes) -> bytes:
    """One AD structure."""
    if len(data) > 254:
        raise ValueError("AD structure data is at most 254 bytes")
    return bytes((len(data) + 1, ad_type)) + data


FLAGS_LE_GENERAL = ad(AD_FLAGS, b"\x06")  # LE general discoverable, BR/EDR not supported


def ibeacon_adv(beacon_uuid: str, major: int, minor: int, power_1m: int) -> bytes:
    payload = IBEACON_PREFIX + uuid.UUID(beacon_uuid).bytes + struct.pack(
        ">HHb", major, minor, power_1m
    )
    return FLAGS_LE_GENERAL + ad(AD_MANUFACTURER, APPLE_COMPANY_ID.to_bytes(2, "little") + payload)


def _eddystone(frame: bytes) -> bytes:
    service = EDDYSTONE_UUID16.to_bytes(2, "little")
    return FLAGS_LE_GENERAL + ad(AD_COMPLETE_16, service) + ad(AD_SERVICE_DATA_16, service + frame)


def eddystone_uid_adv(namespace: str, instance: str, tx_power_0m: int) -> bytes:
    ns, inst = bytes.fromhex(namespace), bytes.fromhex(instance)
    if len(ns) != 10 or len(inst) != 6:
        raise ValueError("Eddystone namespace is 10 bytes, instance 6 bytes")
    return _eddystone(bytes((FRAME_UID,)) + struct.pack(">b", tx_power_0m) + ns + inst + b"\0\0")


def eddystone_tlm_adv(
    *, battery_mv: int, temperature_c: float, adv_count: int, uptime_ds: int
) -> bytes:
    frame = bytes((FRAME_TLM, 0)) + struct.pack(
        ">HhII", battery_mv, round(temperature_c * 256), adv_count, uptime_ds
    )
    return _eddystone(frame)


def uuid16_of(service_uuid: str) -> int | None:
    """The 16-bit alias of a 128-bit service UUID on the Bluetooth Base UUID, else None."""
    text = service_uuid.lower()
    if len(text) == 36 and text.startswith("0000") and text.endswith(_BT_BASE_SUFFIX):
        try:
            return int(text[4:8], 16)
        except ValueError:
            return None
    return None


def rebuild_advertisement(
    manufacturer_data: dict[int, bytes], service_data: dict[str, bytes]
) -> bytes:
    """Raw AD structures from a BLE stack's pre-parsed fields (bleak gives those, not
    the raw PDU), so every backend feeds ``parse_advertisement`` the same bytes."""
    out = bytearray()
    for company, data in manufacturer_data.items():
        if len(data) <= 252:
            out += ad(AD_MANUFACTURER, company.to_bytes(2, "little") + data)
    for service_uuid, data in service_data.items():
        short = uuid16_of(service_uuid)
        if short is not None and len(data) <= 252:
            out += ad(AD_SERVICE_DATA_16, short.to_bytes(2, "little") + data)
    return bytes(out)
