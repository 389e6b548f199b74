"""storefleet protocols: the contracts between store boxes, devices and the cloud.

Pure data: MQTT topic names, pydantic message models and the codec that turns
bytes into typed messages (or typed errors). Nothing in this package does I/O.
"""

from protocols.codec import DEFAULT_MAX_PAYLOAD, decode, encode
from protocols.errors import DecodeError, ProtocolError, StorefleetError, TopicError

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "DecodeError",
    "ProtocolError",
    "StorefleetError",
    "TopicError",
    "decode",
    "encode",
]
