"""JSON codec with a size cap and typed errors naming the bad field.

    msg = decode(payload, Event)          # -> Event, or raises DecodeError
    data = encode(msg)                    # -> compact JSON bytes

``decode_state`` picks Birth or Death from the ``online`` flag.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from protocols.errors import DecodeError
from protocols.messages import Birth, Death, State

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
