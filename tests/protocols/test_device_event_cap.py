"""The edge's cap on a device event leaves room for the uplink envelope (decision 0023).

The largest device event the edge takes, wrapped in the widest envelope the agent can
give it, is exactly the cloud's cap: the edge never acknowledges an event the cloud
would drop as ``too_large``.
"""

from __future__ import annotations

import pydantic
import pytest

from protocols import DecodeError, decode, encode
from protocols.codec import (
    DEFAULT_MAX_PAYLOAD,
    DEVICE_EVENT_MAX,
    EVENT_ENVELOPE_MAX,
    decode_device_event,
)
from protocols.messages import DeviceEvent, Event

WIDEST_ID = "x" * 64


def device_event_of(size: int, *, event_id: str = WIDEST_ID) -> DeviceEvent:
    """A device event whose encoding is exactly ``size`` bytes."""
    empty = len(encode(DeviceEvent(id=event_id, kind="sale", ts=1, data={"pad": ""})))
    event = DeviceEvent(id=event_id, kind="sale", ts=1, data={"pad": "x" * (size - empty)})
    assert len(encode(event)) == size
    return event


def wrap_widest(dev: DeviceEvent) -> bytes:
    """The device event as the agent forwards it, with the widest envelope there is."""
    return encode(Event(id=dev.id, kind=dev.kind, ts=dev.ts, data=dev.data,
                        store_id=WIDEST_ID, device_id=WIDEST_ID, seq=2**63 - 1))


def test_the_largest_device_event_wrapped_is_exactly_the_clouds_cap() -> None:
    assert DEVICE_EVENT_MAX == DEFAULT_MAX_PAYLOAD - EVENT_ENVELOPE_MAX
    largest = device_event_of(DEVICE_EVENT_MAX)
    assert decode_device_event(encode(largest)) == largest
    wrapped = wrap_widest(largest)
    assert len(wrapped) == DEFAULT_MAX_PAYLOAD
    assert decode(wrapped, Event).data == largest.data  # what ingest does with it


def test_one_byte_more_is_refused_as_too_large() -> None:
    over = encode(device_event_of(DEVICE_EVENT_MAX + 1))
    with pytest.raises(DecodeError) as caught:
        decode_device_event(over)
    assert caught.value.reason == "too_large"


def test_the_issues_262100_byte_event_is_refused_at_the_edge() -> None:
    # Accepted before, then dropped by ingest once wrapped (262,160 bytes > 262,144).
    with pytest.raises(DecodeError) as caught:
        decode_device_event(encode(device_event_of(262_100)))
    assert caught.value.reason == "too_large"


def test_a_payload_that_grows_when_re_encoded_is_judged_by_what_is_forwarded() -> None:
    # "1e5" is re-encoded as "100000.0": 5 bytes more per value. Under the cap as sent,
    # over it as forwarded.
    values = DEVICE_EVENT_MAX // 8
    head = b'{"v":1,"id":"e1","kind":"sale","ts":1,"data":{"n":['
    raw = head + b",".join([b"1e5"] * values) + b"]}}"
    assert len(raw) <= DEVICE_EVENT_MAX < len(encode(decode(raw, DeviceEvent)))
    with pytest.raises(DecodeError) as caught:
        decode_device_event(raw)
    assert caught.value.reason == "too_large"


@pytest.mark.parametrize("field", ["id", "store_id", "device_id"])
def test_no_id_is_wider_than_the_envelope_allows_for(field: str) -> None:
    # The allowance assumes 64-character ids; a wider one must fail here first.
    doc = {"id": "e1", "kind": "sale", "ts": 1, "store_id": "S001", "device_id": "d1",
           "seq": 1, field: "x" * 65}
    with pytest.raises(pydantic.ValidationError):
        Event(**doc)  # type: ignore[arg-type]
