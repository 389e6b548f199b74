from __future__ import annotations

import pytest

from protocols import TopicError, topics


def test_builders_and_parser_round_trip() -> None:
    assert topics.state("S001") == "sf/v1/S001/state"
    assert topics.parse_uplink(topics.evt("S001", "sale")) == topics.UplinkTopic(
        "S001", "evt", kind="sale"
    )
    t = topics.parse_uplink(topics.tele("S001", "cart", "C-7"))
    assert (t.channel, t.kind, t.target) == ("tele", "cart", "C-7")
    t = topics.parse_uplink(topics.shadow_reported("S001", "agent"))
    assert (t.channel, t.target, t.direction) == ("shadow", "agent", "reported")
    assert topics.parse_uplink(topics.cmd_res("S9")).channel == "cmd-res"
    assert topics.parse_uplink(topics.content_manifest("S9")).channel == "content"


@pytest.mark.parametrize(
    "bad",
    [
        "sf/v2/S001/state",
        "sf/v1/_fleet/rebirth",
        "sf/v1/S001",
        "sf/v1/S001/evt",
        "sf/v1/S001/evt/sale/extra",
        "sf/v1/S001/nope",
        "sf/v1/S 001/state",
        "sf/v1/S001/shadow/agent/sideways",
    ],
)
def test_parser_rejects_foreign_topics(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.parse_uplink(bad)


@pytest.mark.parametrize("bad_id", ["", "a/b", "+", "#", "S 1", "x" * 65])
def test_ids_cannot_escape_the_namespace(bad_id: str) -> None:
    with pytest.raises(TopicError):
        topics.state(bad_id)


def test_local_bus_topics() -> None:
    topic = topics.local("printer", "P1", "up", "evt")
    assert topic == "store/printer/P1/up/evt"
    parsed = topics.parse_local(topic)
    assert (parsed.device_kind, parsed.device_id, parsed.direction, parsed.type) == (
        "printer", "P1", "up", "evt",
    )
    with pytest.raises(TopicError):
        topics.parse_local("store/printer/P1/sideways/evt")


def test_shared_subscription_filter() -> None:
    assert topics.shared("sf/v1/+/state", "ingest") == "$share/ingest/sf/v1/+/state"
