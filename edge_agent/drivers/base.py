"""The one small interface every device driver implements.

A driver owns one device (or one gateway for many, such as the ESL access point or
a BLE scanner). The agent gives it a ``DriverContext`` - the only way a driver
reaches the rest of the agent - and runs ``run()`` under a supervisor that restarts
it with backoff when it raises. ``health()`` must be cheap and never block: it
returns a frozen snapshot the supervisor puts into the reported shadow and metrics.

    @register
    class PrinterDriver(Driver):
        family = "printer"

        async def run(self) -> None: ...          # until cancelled; raise on failure
        def health(self) -> DeviceHealth: ...
        async def handle_command(self, name, args) -> dict: ...

Errors: ``DriverError`` (base) carries ``device_id``; ``CommandRejected`` is raised by
``handle_command`` for an unknown command or bad arguments and becomes a
``rejected`` command result.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from prometheus_client import CollectorRegistry

from protocols.clock import Clock
from protocols.messages import DEVICE_TEXT_MAX, device_text_fits


class DriverError(Exception):
    def __init__(self, device_id: str, detail: str) -> None:
        super().__init__(f"device {device_id}: {detail}")
        self.device_id = device_id
        self.detail = detail


class CommandRejected(DriverError):
    """Unknown command or bad arguments; becomes a ``rejected`` command result."""


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One configured device: from the agent's config file or the desired shadow."""

    device_id: str
    family: str
    model: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The model goes into the store's birth: bounded like any device's (decision 0024).
        if not device_text_fits(self.model):
            raise DriverError(self.device_id, f"model longer than {DEVICE_TEXT_MAX} characters")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> DeviceConfig:
        try:
            return cls(
                device_id=str(doc["id"]),
                family=str(doc["family"]),
                model=None if doc.get("model") is None else str(doc["model"]),
                options=dict(doc.get("options") or {}),
            )
        except KeyError as err:
            raise DriverError(str(doc.get("id", "?")), f"device config needs {err}") from err


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """A frozen snapshot of a device's health (cheap to build, safe to share)."""

    online: bool
    last_seen_ms: int | None = None
    alarms: tuple[str, ...] = ()  # active alarm codes, e.g. ("paper_out",)
    details: Mapping[str, Any] = field(default_factory=dict)  # battery, rssi, temperature ...


LocalHandler = Callable[[str, str, bytes], Awaitable[None]]
"""(device_id, message type, payload) for a local-bus message a driver subscribed to."""


class DriverContext(Protocol):
    """What the agent gives a driver. Tests pass ``FakeContext`` (``drivers.testing``)."""

    store_id: str
    clock: Clock
    registry: CollectorRegistry

    async def emit_event(
        self, kind: str, *, device_id: str, data: Mapping[str, Any], event_id: str | None = None
    ) -> str:
        """Commit a business event to the durable outbox; returns its id. ``event_id``
        makes it idempotent (the same id twice is stored once)."""
        ...

    def telemetry(self, device_kind: str, device_id: str, values: Mapping[str, Any]) -> None:
        """Best-effort telemetry sample (QoS 0 uplink, batched)."""
        ...

    async def publish_local(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish on the store-local bus (e.g. ``store/cart/C7/down/screen``)."""
        ...

    def on_local(self, device_kind: str, handler: LocalHandler) -> None:
        """Receive ``store/{device_kind}/+/up/{type}`` messages of types other than
        the agent's own (evt, tele, state)."""
        ...


class Driver(abc.ABC):
    family: ClassVar[str]

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        self.config = config
        self.ctx = ctx

    @property
    def device_id(self) -> str:
        return self.config.device_id

    @abc.abstractmethod
    async def run(self) -> None:
        """Drive the device until cancelled. Raise to have the supervisor restart it."""

    @abc.abstractmethod
    def health(self) -> DeviceHealth:
        """A cheap, non-blocking snapshot."""

    async def handle_command(self, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        raise CommandRejected(self.device_id, f"unknown command {name!r}")


DRIVERS: dict[str, type[Driver]] = {}


def register(cls: type[Driver]) -> type[Driver]:
    """Class decorator: make a driver available to device configs by its family."""
    if cls.family in DRIVERS and DRIVERS[cls.family] is not cls:
        raise ValueError(f"two drivers for family {cls.family!r}")
    DRIVERS[cls.family] = cls
    return cls
