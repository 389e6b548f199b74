"""Errors raised by the protocol layer.

    ProtocolError                base of everything raised here
     +-- TopicError              a topic that is not in our namespace (``topic`` attr)
     +-- DecodeError             a payload that is not a valid message
                                 (``reason`` code, ``field`` path, ``detail``)

``DecodeError.reason`` is a short, stable code used as a metric label:
``not_json``, ``too_large``, ``invalid_field``, ``missing_field``, ``unknown_kind``,
``bad_topic``.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base error of the protocols package."""


class TopicError(ProtocolError):
    def __init__(self, topic: str, detail: str) -> None:
        super().__init__(f"bad topic {topic!r}: {detail}")
        self.topic = topic
        self.detail = detail
        self.reason = "bad_topic"


class DecodeError(ProtocolError):
    def __init__(self, reason: str, detail: str, *, field: str | None = None) -> None:
        where = f" (field {field!r})" if field else ""
        super().__init__(f"{reason}{where}: {detail}")
        self.reason = reason
        self.field = field
        self.detail = detail
