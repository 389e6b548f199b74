from __future__ import annotations

import json

import pytest

from protocols import DecodeError, decode, encode
from protocols.codec import decode_state
from protocols.ids import uuid7
from protocols.messages import Birth, Death, Event


def _event(**over: object) -> bytes:
    doc = {"v": 1, "id": uuid7(), "kind": "sale", "store_id": "S001", "seq": 3, "ts": 1_000}
    doc.update(over)
    return json.dumps(doc).encode()


def test_round_trip_and_unknown_fields_ignored() -> None:
    raw = _event(extra_field="ignored", data={"total_minor": 1299})
    event = decode(raw, Event)
    assert event.kind == "sale" and event.data == {"total_minor": 1299}
    assert decode(encode(event), Event) == event


@pytest.mark.parametrize(
    ("payload", "reason", "field"),
    [
        (b"not json at all", "not_json", None),
        (b"[1, 2]", "invalid_field", None),
        (_event(seq="3"), "invalid_field", "seq"),
        (_event(seq=-1), "invalid_field", "seq"),
        (_event(kind="teleport"), "unknown_kind", "kind"),
        (json.dumps({"v": 1, "kind": "sale"}).encode(), "missing_field", "id"),
        (_event(v=2), "invalid_field", "v"),
        (_event(data={"blob": "x" * 300_000}), "too_large", None),
    ],
)
def test_bad_payloads_raise_typed_errors_naming_the_field(
    payload: bytes, reason: str, field: str | None
) -> None:
    with pytest.raises(DecodeError) as info:
        decode(payload, Event)
    assert info.value.reason == reason
    assert info.value.field == field


def test_state_picks_birth_or_death() -> None:
    birth = Birth(bd_seq=4, ts=1, agent_version="0.1.0")
    assert decode_state(encode(birth)) == birth
    assert decode_state(encode(Death(bd_seq=4))) == Death(bd_seq=4)
    with pytest.raises(DecodeError) as info:
        decode_state(b'{"bd_seq": 1}')
    assert info.value.field == "online"


def test_uuid7_is_time_sortable_and_unique() -> None:
    ids = [uuid7(now_ms=1_700_000_000_000 + i) for i in range(100)]
    assert ids == sorted(ids)
    assert len({uuid7() for _ in range(1000)}) == 1000
    assert ids[0][14] == "7"  # version nibble
