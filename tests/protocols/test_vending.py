"""Lock-board frame codec and the cashless session state machine (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import mdb
from protocols import vending as v


def test_crc_check_value() -> None:
    assert v.crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value


def test_encode_layout() -> None:
    wire = v.encode(v.Frame(7, v.Cmd.UNLOCK, b"\x03"))
    assert wire[0] == v.STX and wire[-1] == v.ETX
    assert wire[1] == 3 and wire[2] == 7 and wire[3] == v.Cmd.UNLOCK and wire[4] == 3
    assert int.from_bytes(wire[5:7], "big") == v.crc16(wire[1:5])


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=250)),
                max_size=5), st.integers(1, 9))
def test_roundtrip_in_any_chunking(frames: list[tuple[int, int, bytes]], chunk: int) -> None:
    wire = b"".join(v.encode(v.Frame(*f)) for f in frames)
    dec = v.FrameDecoder()
    out = []
    for i in range(0, len(wire), chunk):
        out += dec.feed(wire[i : i + chunk])
    assert out == [v.Frame(*f) for f in frames]
    assert dec.pending == 0


def test_resync_after_garbage_and_bad_checksum() -> None:
    good = v.encode(v.Frame(1, v.Cmd.STATUS))
    bad = bytearray(v.encode(v.Frame(2, v.Cmd.STATUS)))
    bad[-2] ^= 0xFF
    out = v.FrameDecoder().feed(b"\x55\xaa" + bytes(bad) + b"\x02\x07" + good)
    frames = [x for x in out if isinstance(x, v.Frame)]
    reasons = [x.reason for x in out if isinstance(x, v.Rejected)]
    assert frames == [v.Frame(1, v.Cmd.STATUS)]
    assert "garbage" in reasons and "bad_checksum" in reasons


def test_truncated_frame_is_reported_on_reset() -> None:
    dec = v.FrameDecoder()
    assert dec.feed(v.encode(v.Frame(1, v.Cmd.POLL))[:4]) == []
    assert dec.reset() == v.Rejected("truncated", 4)
    assert dec.reset() is None


@given(st.binary(max_size=4000))
def test_garbage_never_grows_the_buffer(noise: bytes) -> None:
    dec = v.FrameDecoder()
    for i in range(0, len(noise), 97):
        dec.feed(noise[i : i + 97])
        assert dec.pending <= v.MAX_FRAME


def test_payload_helpers() -> None:
    st_ = v.CabinetStatus(frozenset({0, 5, 15}), -2.5)
    assert v.CabinetStatus.decode(st_.encode()) == st_
    for reply in (v.PollReply(v.PollEvent.BEGIN_SESSION, funds=1000, media_id=9),
                  v.PollReply(v.PollEvent.VEND_APPROVED, amount=250),
                  v.PollReply(v.PollEvent.SELECTION, door=3), v.PollReply(v.PollEvent.NONE)):
        assert v.PollReply.decode(reply.encode()) == reply
    with pytest.raises(v.VendingFrameError):
        v.PollReply.decode(b"\x03\x00")
    with pytest.raises(v.VendingFrameError):
        v.PollReply.decode(b"\x99")
    assert v.parse_vend_request(v.vend_request_payload(250, 7)) == (250, 7)


def test_session_happy_path_and_outcomes() -> None:
    s = mdb.transition(mdb.Session(), mdb.Begin("sess-1", 1000))
    s = mdb.transition(s, mdb.Request(250, 101, 2))
    s = mdb.transition(s, mdb.Approved(250))
    s = mdb.transition(s, mdb.Dispensed(True))
    assert s.state is mdb.State.COMPLETING and s.outcome == "success" and s.vend_settled
    data = mdb.vend_event_data(s, device_id="V1", item_sku="COLA")
    assert data["amount"] == 250 and data["door"] == 2
    s = mdb.transition(s, mdb.End())
    assert s.state is mdb.State.IDLE and s.outcome == "success"


@pytest.mark.parametrize(("events", "state"), [
    ([], mdb.State.IDLE),
    ([mdb.Begin("s", 1)], mdb.State.SESSION),
    ([mdb.Begin("s", 1), mdb.Request(1, 1, 0)], mdb.State.REQUESTED),
])
def test_out_of_sequence_events_raise(events: list[mdb.Event], state: mdb.State) -> None:
    s = mdb.Session()
    for e in events:
        s = mdb.transition(s, e)
    assert s.state is state
    with pytest.raises(mdb.SequenceError) as info:
        mdb.transition(s, mdb.Dispensed(True))
    assert info.value.reason == "out_of_sequence"


def test_denied_and_reader_ended_vends() -> None:
    s = mdb.transition(mdb.transition(mdb.Session(), mdb.Begin("s", 100)),
                       mdb.Request(250, 1, 0))
    assert mdb.transition(s, mdb.Denied()).outcome == "denied"
    ended = mdb.transition(mdb.transition(s, mdb.Approved(250)), mdb.End())
    assert ended.outcome == "failure" and ended.vend_settled
    assert mdb.transition(s, mdb.Cancel()).vend_settled is False


def test_vend_event_id_is_deterministic() -> None:
    a = mdb.vend_event_id("S1", "V1", "sess")
    assert a == mdb.vend_event_id("S1", "V1", "sess") != mdb.vend_event_id("S1", "V1", "other")


# ---- bootloader frames (decision 0039) ------------------------------------------------------


def test_firmware_payloads_round_trip() -> None:
    assert v.crc32(b"123456789") == 0xCBF43926
    image = v.firmware_image(b"\x00" * 300)
    assert v.image_ok(image) and not v.image_ok(image[:-1] + b"\x00")
    assert not v.image_ok(b"\x00" * 4)
    assert v.parse_fw_start(v.fw_start_payload(70_000, "2.5.0-rc1")) == (70_000, "2.5.0-rc1")
    block, crc, data = v.parse_fw_block(v.fw_block_payload(513, b"abc"))
    assert (block, crc, data) == (513, v.crc32(b"abc"), b"abc")
    assert v.parse_fw_block_reply(b"\x02\x01\x01") == (513, v.BlockStatus.BAD_CRC)
    assert v.parse_verify_reply(b"\x01") is v.VerifyResult.BAD_IMAGE
    with pytest.raises(v.VendingFrameError):
        v.fw_block_payload(0, b"x" * (v.FW_BLOCK_MAX + 1))  # would not fit one frame
    with pytest.raises(v.VendingFrameError):
        v.fw_start_payload(1, "x" * 33)
    assert len(v.encode(v.Frame(1, v.Cmd.FW_BLOCK,
                                v.fw_block_payload(0, b"x" * v.FW_BLOCK_MAX)))) <= v.MAX_FRAME


@given(st.binary(max_size=300))
def test_firmware_parsers_refuse_garbage_by_reason_only(noise: bytes) -> None:
    for parse in (v.parse_fw_start, v.parse_fw_block, v.parse_fw_block_reply,
                  v.parse_verify_reply, v.parse_version):
        try:
            parse(noise)
        except v.VendingFrameError as err:
            assert err.reason == "bad_payload"
