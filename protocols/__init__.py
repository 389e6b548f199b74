"""storefleet protocols: the contracts between store boxes, devices and the cloud.

Pure data: MQTT topic names, pydantic message models and the codec that turns
bytes into typed messages (or typed errors). Nothing in this package does I/O.

The codec's names are re-exported lazily (PEP 562), so that importing a light
submodule such as ``protocols.errors`` does not load pydantic and every message
model: the command line's start-up time depends on it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from protocols.codec import DEFAULT_MAX_PAYLOAD, decode, encode
    from protocols.errors import DecodeError, ProtocolError, StorefleetError, TopicError

_EXPORTS = {
    "DEFAULT_MAX_PAYLOAD": "protocols.codec",
    "decode": "protocols.codec",
    "encode": "protocols.codec",
    "DecodeError": "protocols.errors",
    "ProtocolError": "protocols.errors",
    "StorefleetError": "protocols.errors",
    "TopicError": "protocols.errors",
}

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "DecodeError",
    "ProtocolError",
    "StorefleetError",
    "TopicError",
    "decode",
    "encode",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'protocols' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
