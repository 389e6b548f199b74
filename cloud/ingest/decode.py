"""Turn one MQTT message (topic, payload) into a typed, checked uplink message.

Everything that can be wrong with a message without looking at the database is
checked here, so that a rejected message never reaches a transaction. Errors are
``protocols`` errors whose ``reason`` becomes the ``reason`` label of
``storefleet_ingest_rejected_total``: the codec's reasons plus

``bad_topic``       not one of the channels ingest consumes
``topic_mismatch``  the payload names another store, event kind or device than its topic
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from protocols import topics
from protocols.codec import decode, decode_state
from protocols.errors import DecodeError, TopicError
from protocols.messages import (
    BIRTH_MAX_BYTES,
    Birth,
    CommandResult,
    Death,
    Event,
    ShadowReported,
    Telemetry,
)

UplinkMessage = Birth | Death | Event | Telemetry | ShadowReported | CommandResult

# A stream repeats a few topics (a store's event kinds and devices), and a parsed topic
# is immutable: parse each once. Bounded, so a flood of odd topics cannot grow it; a
# topic that does not parse raises and is not kept (decision 0055).
_TOPICS_KEPT = 65_536
_parse_uplink = functools.lru_cache(maxsize=_TOPICS_KEPT)(topics.parse_uplink)


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: topics.UplinkTopic
    msg: UplinkMessage

    @property
    def store_id(self) -> str:
        return self.topic.store_id


def channel_of(topic: str) -> str:
    """The ``channel`` metric label of a raw topic (``invalid`` when it does not parse)."""
    try:
        return _parse_uplink(topic).channel
    except TopicError:
        return "invalid"


def decode_uplink(topic: str, payload: bytes | bytearray, *, max_payload: int) -> Inbound:
    """Raise ``DecodeError`` or ``TopicError`` for anything ingest must not store."""
    where = _parse_uplink(topic)
    msg: UplinkMessage
    match where.channel:
        case "state":
            # The birth's own bound (decision 0024), declared once in protocols.messages
            # and kept by the agent; a lower ingest cap still wins.
            msg = decode_state(payload, max_bytes=min(max_payload, BIRTH_MAX_BYTES))
        case "evt":
            msg = decode(payload, Event, max_bytes=max_payload)
            if msg.kind != where.kind:
                raise _mismatch("kind", msg.kind, where.kind)
            if msg.store_id != where.store_id:
                raise _mismatch("store_id", msg.store_id, where.store_id)
        case "tele":
            msg = decode(payload, Telemetry, max_bytes=max_payload)
            if msg.device_kind != where.kind:
                raise _mismatch("device_kind", msg.device_kind, where.kind)
            if msg.device_id != where.target:
                raise _mismatch("device_id", msg.device_id, where.target)
        case "shadow" if where.direction == "reported":
            msg = decode(payload, ShadowReported, max_bytes=max_payload)
        case "cmd-res":
            msg = decode(payload, CommandResult, max_bytes=max_payload)
        case _:
            raise TopicError(topic, f"ingest does not consume {where.channel!r} messages")
    return Inbound(where, msg)


def _mismatch(field: str, payload_value: str, topic_value: str | None) -> DecodeError:
    return DecodeError(
        "topic_mismatch",
        f"payload says {payload_value!r}, topic says {topic_value!r}",
        field=field,
    )
