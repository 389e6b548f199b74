"""The module contract: what a part of the store box declares to the kernel (decision 0030).

    class Greeter(Module):
        name = "greeter"                      # its TOML section [greeter] and its tasks' prefix

        class Settings(ModuleSettings):       # validated before anything starts
            hello: str = "hi"

        def commands(self) -> Mapping[str, CommandSpec[Any]]:
            return {"greet": CommandSpec(GreetArgs, self._greet)}

        async def start(self, tasks: Supervisor) -> None:
            tasks.start("greeter-loop", self._loop)   # supervised: restarted on a crash

A module declares its settings model, the downlink it handles (content kinds, command
targets, agent commands with argument models, desired-shadow keys) and its long-running
tasks; the kernel routes by these declarations. Modules are found, not listed: every
module in the ``edge_agent.modules`` package, and every entry point in the group
``storefleet.agent_modules`` (another package's module, installed beside the agent).

A module runs when its section is in the configuration, or when it is ``default_on``
and its section is absent; ``enabled = false`` in its section turns it off.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from edge_agent.commands import CommandSpec
from edge_agent.errors import ConfigError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from edge_agent.drivers.context import AgentDriverContext
    from edge_agent.drivers.supervisor import DriverSupervisor
    from edge_agent.kernel.supervisor import Supervisor
    from edge_agent.metrics import AgentMetrics
    from edge_agent.shadow import ShadowKey
    from protocols.clock import Clock

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "storefleet.agent_modules"
PayloadHandler = Callable[[bytes], Awaitable[None]]


class ModuleSettings(BaseModel):
    """Base of every module's settings: unknown keys are errors, values are checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True


class Kernel(Protocol):
    """What the kernel offers a module."""

    @property
    def store_id(self) -> str: ...
    @property
    def data_dir(self) -> Path: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def metrics(self) -> AgentMetrics: ...
    @property
    def registry(self) -> CollectorRegistry: ...
    @property
    def sink(self) -> AgentDriverContext: ...  # events and telemetry into the outbox
    @property
    def drivers(self) -> DriverSupervisor: ...
    def online(self) -> bool: ...  # the uplink is up
    def healthy(self) -> bool: ...  # serving: online, cloud-ready, no task failing
    def module(self, name: str) -> Module | None: ...
    # Why a restart or an install now would cut something short (a device's vend or
    # flash, a module's sale in progress), or None (decision 0043).
    def busy(self) -> str | None: ...
    # Stop cleanly, then exit RESTART_EXIT_CODE: the supervisor starts the agent again.
    def request_restart(self, reason: str) -> None: ...


class Module:
    name: ClassVar[str]
    Settings: ClassVar[type[ModuleSettings]] = ModuleSettings
    default_on: ClassVar[bool] = False
    # Modules this one uses: started after them, stopped before them.
    after: ClassVar[tuple[str, ...]] = ()

    def __init__(self, kernel: Kernel, settings: Any) -> None:
        self.kernel = kernel
        self.settings = settings

    # ---- declarations (the kernel routes by them) --------------------------------------

    def content_handlers(self) -> Mapping[str, PayloadHandler]:
        """``content/<kind>`` downlink -> handler."""
        return {}

    def command_targets(self) -> Mapping[str, PayloadHandler]:
        """``cmd/<target>`` downlink handled as a whole (e.g. online orders)."""
        return {}

    def commands(self) -> Mapping[str, CommandSpec[Any]]:
        """Agent commands (``cmd/agent``) with their argument models."""
        return {}

    def shadow_keys(self) -> Sequence[ShadowKey]:
        """Desired-shadow keys this module applies."""
        return ()

    # ---- lifetime --------------------------------------------------------------------

    async def open(self) -> None:
        """Before the kernel's tasks start (storage open, state resumed)."""

    async def start(self, tasks: Supervisor) -> None:
        """Start serving; long-running work goes into ``tasks`` (supervised)."""

    async def stop(self) -> None:
        """Stop serving (its tasks are stopped by the kernel right after)."""

    async def close(self) -> None:
        """After everything stopped, before the database closes."""

    def diagnostics(self) -> dict[str, Any]:
        return {}

    def busy(self) -> str | None:
        """Why stopping the agent now would cut this module's work short (a sale being
        recorded), or None; an agent update waits while any module is busy."""
        return None


def discover() -> dict[str, type[Module]]:
    """Every module class: the ``edge_agent.modules`` package's, then entry points'."""
    import edge_agent.modules as package

    found: dict[str, type[Module]] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"{package.__name__}.{info.name}")
        cls = getattr(mod, "MODULE", None)
        if isinstance(cls, type) and issubclass(cls, Module):
            found[cls.name] = cls
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as err:  # another package's broken module must not stop the box
            logger.error("agent module %s (%s) cannot be loaded: %s", ep.name, ep.value, err)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Module)):
            logger.error("entry point %s is not an agent Module: %r", ep.name, cls)
            continue
        if cls.name in found:
            logger.error("agent module %s from %s ignored: the name is taken", cls.name, ep.value)
            continue
        found[cls.name] = cls
    return found


def settings_of(cls: type[Module], section: Mapping[str, Any] | None) -> ModuleSettings | None:
    """The module's validated settings, or None when it does not run."""
    if section is None and not cls.default_on:
        return None
    try:
        settings = cls.Settings.model_validate(dict(section or {}))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "?"
        raise ConfigError(f"{cls.name}.{where}", first["msg"]) from err
    return settings if settings.enabled else None


def load_modules(kernel: Kernel, sections: Mapping[str, Mapping[str, Any]]) -> dict[str, Module]:
    """Build the modules that run (found by ``discover``, configured from ``sections``),
    each after the modules it uses, so that it can look them up while it is built."""
    classes = discover()
    unknown = sorted(set(sections) - set(classes))
    if unknown:
        raise ConfigError(unknown[0], f"no such module (known: {', '.join(sorted(classes))})")
    wanted = {name: settings for name, cls in classes.items()
              if (settings := settings_of(cls, sections.get(name))) is not None}
    order: list[str] = []

    def place(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in path:
            raise ConfigError(name, f"modules use each other in a circle: {' -> '.join(path)}")
        for dep in classes[name].after:
            if dep in wanted:
                place(dep, (*path, name))
        order.append(name)

    for name in sorted(wanted):
        place(name, ())
    modules: dict[str, Module] = {}
    loaded = getattr(kernel, "modules", None)
    for name in order:
        modules[name] = classes[name](kernel, wanted[name])
        if isinstance(loaded, dict):
            loaded[name] = modules[name]  # visible to the next one's kernel.module()
    return modules
