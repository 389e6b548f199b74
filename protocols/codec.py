"""JSON codec with a size cap and typed errors naming the bad field.

    msg = decode(payload, Event)          # -> Event, or raises DecodeError
    data = encode(msg)                    # -> compact JSON bytes

``decode_state`` picks Birth or Death from the ``online`` flag. ``decode_device_event``
takes a device's event only if the agent can forward it: the uplink ``Event`` it becomes
is the device's event plus an envelope (store, device, seq), and it must still fit the
cloud's cap, so the edge's cap is ``DEVICE_EVENT_MAX = DEFAULT_MAX_PAYLOAD -
EVENT_ENVELOPE_MAX`` (decision 0023).
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from protocols.errors import DecodeError
from protocols.ids import ID_MAX
from protocols.messages import Birth, Death, DeviceEvent, Event, State

# 256 KiB: a birth with a few thousand devices fits; a runaway payload does not.
DEFAULT_MAX_PAYLOAD = 256 * 1024

M = TypeVar("M", bound=BaseModel)


def encode(msg: BaseModel) -> bytes:
    return msg.model_dump_json(exclude_none=False).encode()


def _check_size(payload: bytes | bytearray | str, max_bytes: int) -> bytes:
    raw = payload.encode() if isinstance(payload, str) else bytes(payload)
    if len(raw) > max_bytes:
        raise DecodeError("too_large", f"{len(raw)} bytes > cap of {max_bytes}")
    return raw


def _from_validation(err: ValidationError) -> DecodeError:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    kind = first["type"]
    if kind == "missing":
        return DecodeError("missing_field", "field required", field=field)
    msg = str(first["msg"])
    if "unknown event kind" in msg:
        return DecodeError("unknown_kind", msg.removeprefix("Value error, "), field=field)
    if kind == "json_invalid":
        return DecodeError("not_json", msg)
    if kind == "model_type" or (kind == "dict_type" and field is None):
        return DecodeError("invalid_field", "payload must be a JSON object", field=field)
    return DecodeError("invalid_field", msg, field=field)


def decode(
    payload: bytes | bytearray | str, model: type[M], *, max_bytes: int = DEFAULT_MAX_PAYLOAD
) -> M:
    raw = _check_size(payload, max_bytes)
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as err:
        raise _from_validation(err) from err


def decode_device_event(payload: bytes | bytearray | str) -> DeviceEvent:
    """A device's ``up/evt``, refused (``too_large``) unless its uplink ``Event`` fits.

    Both the payload as sent and the event as the agent re-encodes it must be within
    ``DEVICE_EVENT_MAX``: re-encoding can grow a payload (``1e5`` becomes ``100000.0``).
    """
    raw = payload.encode() if isinstance(payload, str) else bytes(payload)
    if len(raw) > DEVICE_EVENT_MAX:
        raise _event_too_large(f"{len(raw)} bytes")
    event = decode(raw, DeviceEvent)
    size = len(encode(event))
    if size > DEVICE_EVENT_MAX:
        raise _event_too_large(f"{size} bytes once re-encoded")
    return event


def _event_too_large(what: str) -> DecodeError:
    return DecodeError(
        "too_large",
        f"device event of {what} > the edge's cap of {DEVICE_EVENT_MAX} (the cloud's "
        f"{DEFAULT_MAX_PAYLOAD} less {EVENT_ENVELOPE_MAX} for the uplink envelope)",
    )


def decode_state(
    payload: bytes | bytearray | str, *, max_bytes: int = DEFAULT_MAX_PAYLOAD
) -> State:
    raw = _check_size(payload, max_bytes)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise DecodeError("not_json", str(err)) from err
    if not isinstance(doc, dict):
        raise DecodeError("invalid_field", "payload must be a JSON object")
    online = doc.get("online")
    if online is True:
        return decode(raw, Birth, max_bytes=max_bytes)
    if online is False:
        return decode(raw, Death, max_bytes=max_bytes)
    raise DecodeError("invalid_field", "online must be true or false", field="online")


# ---- the uplink envelope of a device event ----------------------------------------------

_WIDEST_ID = "x" * ID_MAX  # the widest id (protocols.ids)
_WIDEST_SEQ = 2**63 - 1  # the outbox's seq is a SQLite INTEGER: it cannot go higher


def _envelope_bytes() -> int:
    """What wrapping adds to a device event's encoding, at its widest.

    ``Event`` encodes ``id``, ``kind``, ``ts`` and ``data`` exactly as ``DeviceEvent``
    does; the rest (``store_id``, ``device_id``, ``seq``, ``historical`` and their
    keys) is the envelope. Measured on the real models, so a new envelope field widens
    it by itself."""
    inner = DeviceEvent(id=_WIDEST_ID, kind="sale", ts=0)
    wrapped = max(
        len(encode(Event(id=inner.id, kind=inner.kind, ts=inner.ts, store_id=_WIDEST_ID,
                         device_id=_WIDEST_ID, seq=_WIDEST_SEQ, historical=historical)))
        for historical in (False, True)
    )
    return wrapped - len(encode(inner))


EVENT_ENVELOPE_MAX = _envelope_bytes()
"""Bytes the agent's envelope adds to a device event (widest store and device ids, seq)."""

DEVICE_EVENT_MAX = DEFAULT_MAX_PAYLOAD - EVENT_ENVELOPE_MAX
"""The largest device event the edge takes: wrapped, it is at most ``DEFAULT_MAX_PAYLOAD``."""
