"""Errors raised by the edge agent.

    AgentError                   base of everything raised here (a ``StorefleetError``,
                                 protocols.errors: the one root, decision 0031)
     +-- ConfigError             invalid settings (``field`` attr names the setting)
     +-- StorageError            the SQLite outbox / kv store failed (``op`` attr)
     +-- LinkError               an MQTT session failed or dropped (``link``: "uplink" | "local")

Third-party errors (aiomqtt's ``MqttError``, ``sqlite3.Error``) are converted to these
where they enter our code.
"""

from __future__ import annotations

from protocols.errors import StorefleetError


class AgentError(StorefleetError):
    """Base error of the edge agent."""

    reason = "agent_error"


class AgentFailed(AgentError):
    """A critical part of the agent crashed: the agent stopped (the process exits 1)."""

    def __init__(self, task: str, err: BaseException) -> None:
        super().__init__(f"critical task {task} crashed: {type(err).__name__}: {err}")
        self.task = task


class ConfigError(AgentError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"invalid setting {field!r}: {detail}")
        self.field = field
        self.detail = detail


class StorageError(AgentError):
    def __init__(self, op: str, detail: str) -> None:
        super().__init__(f"storage {op} failed: {detail}")
        self.op = op
        self.detail = detail


class LinkError(AgentError):
    def __init__(self, link: str, detail: str) -> None:
        super().__init__(f"{link} link: {detail}")
        self.link = link
        self.detail = detail
