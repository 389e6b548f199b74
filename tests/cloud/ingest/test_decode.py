"""Every class of bad uplink message is refused with a stable reason code."""

from __future__ import annotations

import pytest

from cloud.ingest.decode import channel_of, decode_uplink
from protocols import encode, topics
from protocols.errors import DecodeError, ProtocolError
from protocols.messages import Event

GOOD = Event(id="e-1", kind="sale", store_id="s1", seq=1, ts=1).model_dump(mode="json")
MAX = 4096

# (topic, payload, reason): one line per class of malformed message.
BAD: list[tuple[str, bytes, str]] = [
    (topics.evt("s1", "sale"), b"{not json", "not_json"),
    (topics.evt("s1", "sale"), b"\xff\xfe", "not_json"),
    (topics.evt("s1", "sale"), b"[1, 2]", "invalid_field"),
    (topics.evt("s1", "sale"), encode(Event(**{**GOOD, "seq": 1}))[:-1] + b', "x":1', "not_json"),
    (topics.evt("s1", "sale"), b'{"id": "e-1", "kind": "sale"}', "missing_field"),
    (topics.evt("s1", "sale"),
     Event(**GOOD).model_dump_json().replace('"seq":1', '"seq":"1"').encode(), "invalid_field"),
    (topics.evt("s1", "sale"), b'{"v":1,"id":"e","kind":"sale","store_id":"s1","seq":1,'
     b'"ts":1,"data":{"pad":"' + b"x" * MAX + b'"}}', "too_large"),
    (topics.evt("s1", "teleport"), Event(**GOOD).model_dump_json().replace(
        '"sale"', '"teleport"').encode(), "unknown_kind"),
    (topics.evt("s1", "refund"), encode(Event(**GOOD)), "topic_mismatch"),
    (topics.evt("s2", "sale"), encode(Event(**GOOD)), "topic_mismatch"),
    (topics.state("s1"), b'{"online": "yes"}', "invalid_field"),
    (topics.state("s1"), b'{"online": true, "ts": 1}', "missing_field"),
    ("sf/v1/s1/nonsense", b"{}", "bad_topic"),
    ("sf/v1/s1/evt/sale/extra", encode(Event(**GOOD)), "bad_topic"),
    ("sf/v1/_fleet/state", b"{}", "bad_topic"),
    (topics.shadow_desired("s1"), b"{}", "bad_topic"),  # a downlink channel sent upward
    (topics.tele("s1", "cart", "c1"), b'{"device_id":"c2","device_kind":"cart",'
     b'"samples":[{"ts":1,"values":{}}]}', "topic_mismatch"),
    (topics.cmd_res("s1"), b'{"cmd_id":"c","status":"maybe","ts":1}', "invalid_field"),
]


@pytest.mark.parametrize(("topic", "payload", "reason"), BAD, ids=[f"{r}-{i}" for i, (_, _, r)
                                                                     in enumerate(BAD)])
def test_bad_message_is_refused_with_reason(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_uplink(topic, payload, max_payload=MAX)
    assert getattr(info.value, "reason", None) == reason


def test_good_event_decodes() -> None:
    sent = Event(**{**GOOD, "seq": 7, "data": {"total": 1299}})
    item = decode_uplink(topics.evt("s1", "sale"), encode(sent), max_payload=MAX)
    assert item.store_id == "s1" and item.topic.kind == "sale"
    assert item.msg == sent  # every field, not just the type


def test_channel_label() -> None:
    assert channel_of(topics.cmd_res("s1")) == "cmd-res"
    assert channel_of("garbage") == "invalid"


def test_decode_error_names_field() -> None:
    with pytest.raises(DecodeError) as info:
        decode_uplink(topics.evt("s1", "sale"), b'{"id":"e"}', max_payload=MAX)
    assert info.value.field
