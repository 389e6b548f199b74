"""Pickup codes (decision 0066): signed by the cloud's key, checked by the box alone;
forged, expired, misplaced and malformed codes refused with their reason; the
cabinet's CODE_ENTERED poll event on the wire."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols import pickup
from protocols import vending as v

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
NOW = 1_790_000_000_000
RES = pickup.Reservation("S001", "vend-1", 3, "0193a1b2-0000-7000-8000-000000000001",
                         NOW + 3_600_000)


def code_for(res: pickup.Reservation, key: Ed25519PrivateKey = KEY, **kw: object) -> str:
    fields = {"store_id": res.store_id, "cabinet_id": res.cabinet_id, "door": res.door,
              "order_id": res.order_id, "expires_ms": res.expires_ms} | kw
    return pickup.make_code(res.order_id, int(fields["expires_ms"]),  # type: ignore[call-overload]
                            signature=key.sign(pickup.signed_message(**fields)))  # type: ignore[arg-type]


def check(text: str, *, now: int = NOW, cabinet: str = "vend-1") -> pickup.Reservation:
    return pickup.check_code(text, {RES.order_id: RES}, keys={"k": KEY.public_key()},
                             now_ms=now, cabinet_id=cabinet)


def reason(text: str, **kw: object) -> str:
    with pytest.raises(pickup.PickupRefused) as err:
        check(text, **kw)  # type: ignore[arg-type]
    return err.value.reason


def test_a_genuine_code_opens_its_reservation_and_fits_one_frame() -> None:
    text = code_for(RES)
    assert check(text) == RES
    assert len(text) <= v.CODE_MAX and text.startswith("SFP1.")
    assert code_for(RES) == text  # deterministic: a retried order gets the same code


def test_forged_expired_misplaced_and_unknown_are_told_apart() -> None:
    assert reason(code_for(RES, key=OTHER)) == "forged"
    assert reason(code_for(RES, door=4)) == "forged"  # signed for another door
    assert reason(code_for(RES, cabinet_id="vend-2")) == "forged"
    prefix, order, exp, sig = code_for(RES).split(".")
    later = ".".join((prefix, order, str(int(exp) + 86_400), sig))
    assert reason(later) == "forged"  # a longer expiry is not what was signed
    assert reason(code_for(RES), now=RES.expires_ms) == "expired"
    assert reason(code_for(RES), cabinet="vend-2") == "wrong_cabinet"
    other = pickup.Reservation("S001", "vend-1", 3, "0193a1b2-0000-7000-8000-000000000002",
                               NOW + 1)
    assert reason(code_for(other)) == "unknown_order"
    flipped = list(code_for(RES))
    flipped[-5] = "A" if flipped[-5] != "A" else "B"
    assert reason("".join(flipped)) in ("forged", "malformed")


@pytest.mark.parametrize("text", ["", "SFP1", "SFP1.a.b.c", "SFP1..1.AAAA", "SFM2.x.1.y",
                                  "SFP1.o/../x.1." + "A" * 86, "SFP1.o.12x." + "A" * 86,
                                  "SFP1.o.1." + "A" * 80])
def test_malformed_codes(text: str) -> None:
    assert reason(text) == "malformed"


def test_code_entered_frame_round_trips_and_garbage_is_refused() -> None:
    text = code_for(RES)
    reply = v.PollReply(v.PollEvent.CODE_ENTERED, code=text)
    assert v.PollReply.decode(reply.encode()) == reply
    frame = v.encode(v.Frame(7, v.Cmd.POLL | v.REPLY_BIT, reply.encode()))
    (decoded,) = v.FrameDecoder().feed(frame)
    assert isinstance(decoded, v.Frame) and v.PollReply.decode(decoded.payload).code == text
    for bad in (b"\x21", b"\x21\x05ab", b"\x21\x02a\x00", b"\x21\x00",
                b"\x21\x01\xff", b"\x21\x03a b"):
        with pytest.raises(v.VendingFrameError):
            v.PollReply.decode(bad)
    with pytest.raises(v.VendingFrameError):
        v.PollReply(v.PollEvent.CODE_ENTERED, code="x" * (v.CODE_MAX + 1)).encode()
    rng = random.Random(66)
    for _ in range(2000):  # never anything but a frame error on garbage
        blob = bytes([0x21]) + bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
        try:
            v.PollReply.decode(blob)
        except v.VendingFrameError:
            pass
