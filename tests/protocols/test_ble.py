"""BLE advertisement codecs: published test vectors, round trips, and fuzzing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocols import ble

IBEACON_HEX = "0201061aff4c0002154142434445464748494041424344454600010002f8"
TLM_HEX = "0201060303aafe1116aafe20000b1813000000146700002ac4"


def test_ibeacon_vector() -> None:
    [frame] = ble.parse_advertisement(bytes.fromhex(IBEACON_HEX))
    assert frame == ble.IBeacon(
        uuid="41424344-4546-4748-4940-414243444546", major=1, minor=2, power_1m=-8
    )
    assert frame.key == "ibeacon:41424344-4546-4748-4940-414243444546:1:2"


def test_eddystone_tlm_vector() -> None:
    [frame] = ble.parse_advertisement(bytes.fromhex(TLM_HEX))
    assert isinstance(frame, ble.EddystoneTLM)
    assert frame.battery_mv == 2840
    assert frame.temperature_c == 19.0
    assert frame.adv_count == 5223
    assert frame.uptime_ds == 10948
    assert frame.uptime_s == 1094.8


def test_eddystone_uid_round_trip_and_1m_power() -> None:
    raw = ble.eddystone_uid_adv("00112233445566778899", "a1b2c3d4e5f6", -20)
    [frame] = ble.parse_advertisement(raw)
    assert frame == ble.EddystoneUID(
        namespace="00112233445566778899", instance="a1b2c3d4e5f6", tx_power_0m=-20
    )
    assert frame.power_1m == -61  # 0 m power minus 41 dB
    assert frame.key == "eddystone:00112233445566778899:a1b2c3d4e5f6"


def test_eddystone_url() -> None:
    service = ble.EDDYSTONE_UUID16.to_bytes(2, "little")
    frame = bytes((ble.FRAME_URL,)) + b"\xeb" + b"\x03" + b"goo.gl/S6zT6P"
    raw = ble.FLAGS_LE_GENERAL + ble.ad(ble.AD_SERVICE_DATA_16, service + frame)
    [url] = ble.parse_advertisement(raw)
    assert url == ble.EddystoneURL(url="https://goo.gl/S6zT6P", tx_power_0m=-21)
    expanded = bytes((ble.FRAME_URL, 0xEB, 0x00)) + b"example" + b"\x07"
    [url2] = ble.parse_advertisement(
        ble.ad(ble.AD_SERVICE_DATA_16, service + expanded)
    )
    assert isinstance(url2, ble.EddystoneURL) and url2.url == "http://www.example.com"


def test_tlm_round_trip_and_unsupported_temperature() -> None:
    raw = ble.eddystone_tlm_adv(battery_mv=3000, temperature_c=-4.5, adv_count=7, uptime_ds=99)
    assert ble.parse_advertisement(raw) == [
        ble.EddystoneTLM(battery_mv=3000, temperature_c=-4.5, adv_count=7, uptime_ds=99)
    ]
    no_temp = bytearray(bytes.fromhex(TLM_HEX))
    no_temp[-10:-8] = b"\x80\x00"
    [tlm] = ble.parse_advertisement(bytes(no_temp))
    assert isinstance(tlm, ble.EddystoneTLM) and tlm.temperature_c is None


def test_wrong_service_uuid_or_frame_type_parses_to_nothing() -> None:
    raw = bytearray(bytes.fromhex(TLM_HEX))
    wrong_uuid = bytearray(raw)
    wrong_uuid[-15:-13] = b"\xab\xfe"  # service data for 0xFEAB, not Eddystone
    assert ble.parse_advertisement(bytes(wrong_uuid)) == []
    wrong_frame = bytearray(raw)
    wrong_frame[-13] = 0x30  # an encrypted / unknown frame type
    assert ble.parse_advertisement(bytes(wrong_frame)) == []
    other_company = bytearray(bytes.fromhex(IBEACON_HEX))
    other_company[5] = 0x4D  # company 0x004D is not Apple
    assert ble.parse_advertisement(bytes(other_company)) == []


def test_truncated_and_empty_input() -> None:
    raw = bytes.fromhex(IBEACON_HEX)
    for cut in range(len(raw)):
        assert ble.parse_advertisement(raw[:cut]) == []
    assert ble.parse_advertisement(b"") == []
    assert ble.parse_advertisement(b"\x00" * 31) == []


def test_rebuild_from_preparsed_fields() -> None:
    raw = bytes.fromhex(IBEACON_HEX)
    [(_, _), (_, mfr)] = list(ble.ad_structures(raw))
    rebuilt = ble.rebuild_advertisement(
        {int.from_bytes(mfr[:2], "little"): mfr[2:]},
        {"0000feaa-0000-1000-8000-00805f9b34fb": bytes.fromhex("20000b1813000000146700002ac4"),
         "6e400001-b5a3-f393-e0a9-e50e24dcca9e": b"ignored"},
    )
    frames = ble.parse_advertisement(rebuilt)
    assert [type(f).__name__ for f in frames] == ["IBeacon", "EddystoneTLM"]


@given(st.binary(max_size=64))
def test_random_bytes_never_raise(raw: bytes) -> None:
    for frame in ble.parse_advertisement(raw):
        assert isinstance(frame, ble.Frame)


@given(st.lists(st.tuples(st.sampled_from([0x16, 0xFF, 0x03, 0x09]), st.binary(max_size=30)),
                max_size=4))
def test_well_framed_random_structures_never_raise(parts: list[tuple[int, bytes]]) -> None:
    raw = b"".join(ble.ad(t, d) for t, d in parts)
    ble.parse_advertisement(raw)
    # and with the Eddystone / Apple prefixes, so the frame parsers see random bodies
    ble.parse_advertisement(b"".join(ble.ad(0x16, b"\xaa\xfe" + d) for _, d in parts))
    ble.parse_advertisement(b"".join(ble.ad(0xFF, b"\x4c\x00\x02\x15" + d) for _, d in parts))
