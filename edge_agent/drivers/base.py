"""The one small interface every device driver implements.

A driver owns one device (or one gateway for many, such as the ESL access point or
a BLE scanner). The agent gives it a ``DriverContext`` - the only way a driver
reaches the rest of the agent - and runs ``run()`` under a supervisor that restarts
it with backoff when it raises. ``health()`` must be cheap and never block: it
returns a frozen snapshot the supervisor puts into the reported shadow and metrics.

    class PrinterOptions(DriverOptions):          # validated before the driver exists
        status_interval_s: float = Field(2.0, gt=0)

    class PrintText(BaseModel):                   # a command's arguments
        lines: list[str]

    @register
    class PrinterDriver(Driver, ReceiptPrinter):  # capabilities: drivers/capabilities.py
        family = "printer"
        Options = PrinterOptions
        options: PrinterOptions

        async def run(self) -> None: ...          # until cancelled; raise on failure
        def health(self) -> DeviceHealth: ...

        @command("print_text", PrintText)
        async def _print_text(self, args: PrintText) -> dict: ...

The contract (decision 0033):

- **Options** are a pydantic model (``Options``), validated in ``Driver.__init__``; a bad
  option raises ``BadOption`` naming the field, and the supervisor refuses that device
  only (counted, shown in ``devices_health``).
- **Commands** are declared with ``@command(name, ArgsModel)``; ``handle_command``
  dispatches by that table and refuses an unknown command or bad arguments with
  ``CommandRejected`` naming the field, before any driver code runs. A command that
  opens cash or stock is declared ``sensitive=True`` (and listed in
  ``protocols.commands``): it is refused without a stated reason (decision 0044).
- **Desired keys** are declared with ``@desired(key, ValueModel)`` (decision 0037): the
  kernel hands a device's desired value of ``key``, checked by the model, to the method;
  it returns what it applied (reported back, so equal to the desired value converges).
- **Capabilities** (``drivers/capabilities.py``) are typed protocols a driver class
  inherits; the agent finds drivers by capability (``DriverSupervisor.find``), never
  by family name.

Errors::

    DriverError              base (``device_id``, ``detail``, ``reason``)
     +-- BadOption           an option the family's model refuses (``field``)
     +-- CommandRejected     unknown command or bad arguments (``field`` when known);
                             becomes a ``rejected`` command result
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, TypeVar

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, ValidationError

from protocols.clock import Clock
from protocols.errors import StorefleetError
from protocols.messages import DEVICE_TEXT_MAX, device_text_fits


class DriverError(StorefleetError):
    reason = "driver_error"  # a short, stable code for metric labels

    def __init__(self, device_id: str, detail: str) -> None:
        super().__init__(f"device {device_id}: {detail}")
        self.device_id = device_id
        self.detail = detail


class BadOption(DriverError):
    """An option the family's ``Options`` model refuses; ``field`` names it."""

    reason = "bad_option"

    def __init__(self, device_id: str, detail: str, *, field: str) -> None:
        super().__init__(device_id, f"option {field}: {detail}")
        self.field = field


class CommandRejected(DriverError):
    """Unknown command or bad arguments; becomes a ``rejected`` command result."""

    reason = "rejected"

    def __init__(self, device_id: str, detail: str, *, field: str | None = None,
                 reason: str | None = None) -> None:
        super().__init__(device_id, detail)
        self.field = field
        if reason is not None:
            self.reason = reason


def first_error(err: ValidationError) -> tuple[str, str]:
    """(field path, message) of a pydantic error's first problem, for one clear line."""
    first = err.errors()[0]
    return ".".join(str(p) for p in first["loc"]) or "(root)", str(first["msg"])


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One configured device: from the agent's config file or the desired shadow.
    ``options`` stay the raw table here; the family's ``Options`` model checks them."""

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


class DriverOptions(BaseModel):
    """Base of every family's options model: unknown keys are refused (a typo such as
    ``buadrate`` must not silently fall back to a default), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AnyOptions(BaseModel):
    """Options of a family that declares no model (test families): taken unchecked."""

    model_config = ConfigDict(extra="allow", frozen=True)


class CommandArgs(BaseModel):
    """Base of a command's argument model: unknown arguments are refused by name, and
    types are strict (a command's JSON says ``5`` for a door, never ``"5"``)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class NoArgs(CommandArgs):
    """Arguments of a command that takes none (extra ones are refused)."""


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
    data_dir: Path | None  # the agent's data folder: where a driver keeps its files

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

    def off_local(self, device_kind: str, handler: LocalHandler) -> None:
        """Undo ``on_local`` (a stopped driver stops receiving)."""
        ...


CommandHandler = Callable[[Any, Any], Awaitable[dict[str, Any]]]
H = TypeVar("H", bound=CommandHandler)


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One declared command: its name, its argument model and the method that runs it."""

    name: str
    args: type[BaseModel]
    handler: CommandHandler
    sensitive: bool = False
    """Needs a stated reason (and, in the cloud, an allowed role): decision 0044."""


def command(name: str, args: type[BaseModel] = NoArgs, *,
            sensitive: bool = False) -> Callable[[H], H]:
    """Declare a driver method as the command ``name`` taking ``args`` (validated before
    the method runs). Stack it to give one method several names. ``sensitive``: it opens
    cash or stock, so it runs only with a reason (list it in ``protocols.commands``)."""

    def mark(fn: H) -> H:
        spec = CommandSpec(name, args, fn, sensitive=sensitive)
        specs = [*getattr(fn, "_driver_commands", ()), spec]
        fn._driver_commands = specs  # type: ignore[attr-defined]
        return fn

    return mark


DesiredHandler = Callable[[Any, Any], Awaitable[Any]]
D = TypeVar("D", bound=DesiredHandler)


@dataclass(frozen=True, slots=True)
class DesiredSpec:
    """One declared desired key: its value model and the method that applies a value and
    returns the value now in effect (a model, or None)."""

    key: str
    value: type[BaseModel]
    handler: DesiredHandler


def desired(key: str, value: type[BaseModel]) -> Callable[[D], D]:
    """Declare a driver method as applying the desired-shadow ``key``, whose value the
    kernel checks with ``value`` first (decision 0037; declare the key in
    ``protocols.shadow_keys`` too)."""

    def mark(fn: D) -> D:
        specs = [*getattr(fn, "_driver_desired", ()), DesiredSpec(key, value, fn)]
        fn._driver_desired = specs  # type: ignore[attr-defined]
        return fn

    return mark


class Driver(abc.ABC):
    family: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = AnyOptions
    commands: ClassVar[Mapping[str, CommandSpec]] = MappingProxyType({})
    desired_keys: ClassVar[Mapping[str, DesiredSpec]] = MappingProxyType({})
    options: BaseModel

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # inherited declarations first; a subclass may override
        table, keys = dict(cls.commands), dict(cls.desired_keys)
        for attr in vars(cls).values():
            for spec in getattr(attr, "_driver_commands", ()):
                table[spec.name] = spec
            for key in getattr(attr, "_driver_desired", ()):
                keys[key.key] = key
        cls.commands = MappingProxyType(table)
        cls.desired_keys = MappingProxyType(keys)

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        self.config = config
        self.ctx = ctx
        self.options = parse_options(type(self), config)

    @property
    def device_id(self) -> str:
        return self.config.device_id

    @abc.abstractmethod
    async def run(self) -> None:
        """Drive the device until cancelled. Raise to have the supervisor restart it."""

    @abc.abstractmethod
    def health(self) -> DeviceHealth:
        """A cheap, non-blocking snapshot."""

    async def handle_command(self, name: str, args: Mapping[str, Any], *,
                             reason: str | None = None) -> dict[str, Any]:
        """Dispatch by the ``@command`` table: unknown names, bad arguments and a
        sensitive command without a ``reason`` are refused here, before any driver code
        runs."""
        spec = self.commands.get(name)
        if spec is None:
            raise CommandRejected(self.device_id, f"unknown command {name!r}",
                                  reason="unknown_command")
        try:
            parsed = spec.args.model_validate(dict(args))
        except ValidationError as err:
            where, msg = first_error(err)
            raise CommandRejected(self.device_id, f"{name}: argument {where}: {msg}",
                                  field=where, reason="bad_argument") from err
        if spec.sensitive and not (reason or "").strip():
            raise CommandRejected(self.device_id, f"{name} is a sensitive command and came "
                                  "without a reason", field="reason", reason="reason_required")
        return await spec.handler(self, parsed)


def parse_options(cls: type[Driver], config: DeviceConfig) -> BaseModel:
    """The family's options model from a device's raw options; ``BadOption`` names the
    first field it refuses."""
    try:
        return cls.Options.model_validate(dict(config.options))
    except ValidationError as err:
        where, msg = first_error(err)
        raise BadOption(config.device_id, msg, field=where) from err


DRIVERS: dict[str, type[Driver]] = {}


def register(cls: type[Driver]) -> type[Driver]:
    """Class decorator: make a driver available to device configs by its family."""
    if cls.family in DRIVERS and DRIVERS[cls.family] is not cls:
        raise ValueError(f"two drivers for family {cls.family!r}")
    DRIVERS[cls.family] = cls
    return cls
