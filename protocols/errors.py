"""The error root of storefleet, and the errors raised by the protocol layer.

Every package's errors subclass one root, so an isolation boundary can catch
"anything of ours" in one clause and label its metric with a stable code
(decision 0031)::

    StorefleetError              root of every error storefleet raises (``reason``)
     +-- ProtocolError           protocols: base of everything raised here
     |    +-- TopicError         a topic that is not in our namespace (``topic`` attr)
     |    +-- DecodeError        a payload that is not a valid message
     |    |                      (``reason`` code, ``field`` path, ``detail``)
     |    +-- IdError            a string that is not an id (``protocols.ids``; ``value``)
     +-- AgentError              edge_agent.errors (ConfigError, StorageError, LinkError ...)
     +-- DriverError             edge_agent.drivers.base
     +-- PosError                edge_agent.pos.peripherals
     +-- CloudError              cloud.errors (DatabaseUnavailable, PublishError ...)
     +-- OrderError              cloud.orders.errors
     +-- PricingError            pricing.errors

``reason`` is a short, stable code used as a metric label: each class has a default
(``"invalid"`` for protocol errors, so existing ``getattr(err, "reason", "invalid")``
labels do not change) and an instance may set a finer one. ``DecodeError.reason`` is one
of ``not_json``, ``too_large``, ``invalid_field``, ``missing_field``, ``unknown_kind``,
``bad_topic``. (The pricing errors' ``reason`` predates the root and is a sentence,
not a code.)
"""

from __future__ import annotations


class StorefleetError(Exception):
    """Root of every error storefleet raises."""

    reason: str = "error"


class ProtocolError(StorefleetError):
    """Base error of the protocols package."""

    reason = "invalid"


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


class IdError(TopicError):
    """A string that is not an id (``protocols.ids.check_id``; ``value``, ``what``). A
    ``TopicError`` too, since ids are what topics are built from: ``except TopicError``
    around a topic builder keeps catching it."""

    def __init__(self, value: str, what: str, detail: str) -> None:
        ProtocolError.__init__(self, f"invalid {what} {value!r}: {detail}")
        self.topic = value
        self.value = value
        self.what = what
        self.detail = detail
        self.reason = "bad_id"
