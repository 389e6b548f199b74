"""The one "decode, or count and log why not" path (``storefleet.mqtt.payloads``)."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, Counter

from protocols import encode
from protocols.errors import ProtocolError, TopicError
from protocols.messages import EventsAck
from storefleet.mqtt.payloads import count_bad, decode_or_count

log = logging.getLogger("test.payloads")


def bad_counter() -> tuple[CollectorRegistry, Counter]:
    registry = CollectorRegistry()
    return registry, Counter("t_bad_payloads", "refused", ["source", "reason"],
                             registry=registry)


def counted(registry: CollectorRegistry, **labels: str) -> float:
    return registry.get_sample_value("t_bad_payloads_total", labels) or 0.0


def test_a_good_payload_decodes_and_counts_nothing() -> None:
    registry, bad = bad_counter()
    ack = EventsAck(ids=["e1", "e2"], ts=1)
    assert decode_or_count(encode(ack), EventsAck, bad=bad, source="cloud", what="ack",
                           log=log) == ack
    assert next(iter(registry.collect())).samples == []


@pytest.mark.parametrize(("payload", "reason"), [
    (b"not json", "not_json"),
    (b'{"ts": 1}', "missing_field"),
    (b'{"ids": ["../x"], "ts": 1}', "invalid_field"),
    (b"x" * 100, "too_large"),
])
def test_a_bad_payload_is_counted_by_reason_and_logged_once(
    payload: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry, bad = bad_counter()
    with caplog.at_level(logging.WARNING, logger="test.payloads"):
        got = decode_or_count(payload, EventsAck, bad=bad, source="cloud",
                              what="ack message", log=log, max_bytes=64)
    assert got is None
    assert counted(registry, source="cloud", reason=reason) == 1
    [record] = caplog.records
    assert record.name == "test.payloads" and record.levelno == logging.WARNING
    assert record.getMessage().startswith("bad ack message: ")


def test_count_bad_uses_the_error_reason(caplog: pytest.LogCaptureFixture) -> None:
    registry, bad = bad_counter()
    with caplog.at_level(logging.WARNING, logger="test.payloads"):
        count_bad(TopicError("store/x", "too short"), bad=bad, source="local",
                  what="local message", log=log)
        count_bad(ProtocolError("no reason of its own"), bad=bad, source="local",
                  what="local message", log=log)
    assert counted(registry, source="local", reason="bad_topic") == 1
    assert counted(registry, source="local", reason="invalid") == 1
    assert [r.getMessage() for r in caplog.records] == [
        "bad local message: bad topic 'store/x': too short",
        "bad local message: no reason of its own",
    ]
