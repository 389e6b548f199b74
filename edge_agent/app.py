"""The composition root: ``Agent`` wires config, storage, local bus, uplink and handlers.

    agent = Agent(AgentConfig(store_id="s-001", data_dir=path, local_bus="mqtt://..."))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop=stop))
    await agent.ready.wait()
    ...
    stop.set(); await task        # drains, publishes Death, closes everything

    async with Agent(config) as agent:   # the same, as a context manager
        ...

Shutdown order: stop taking local messages (unacked ones stay at the local broker),
let the uplink drain the outbox for ``shutdown_drain_s`` and publish the Death, then
close the database, the embedded broker and the metrics endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, field_validator

import edge_agent.drivers  # noqa: F401 - loads every driver family into DRIVERS
from edge_agent.backoff import Backoff
from edge_agent.commands import (
    CommandError,
    CommandHandler,
    CommandRefused,
    CommandSpec,
    NoArgs,
)
from edge_agent.config import AgentConfig
from edge_agent.drivers.base import CommandRejected, DeviceConfig, Driver, DriverError
from edge_agent.drivers.context import AgentDriverContext
from edge_agent.drivers.supervisor import DriverSupervisor
from edge_agent.errors import AgentError, AgentFailed, ConfigError, StorageError
from edge_agent.kernel.module import Module, PayloadHandler, discover, settings_of
from edge_agent.kernel.supervisor import Supervisor
from edge_agent.localbus.consumer import LocalBusConsumer
from edge_agent.localbus.embedded import EmbeddedBroker
from edge_agent.localbus.registry import DeviceRegistry
from edge_agent.metrics import AgentMetrics, MetricsServer
from edge_agent.shadow import (
    LOG_LEVELS,
    AgentShadow,
    ShadowKey,
    check_devices,
    check_interval,
    check_log_level,
)
from edge_agent.storage import Database, KvStore
from edge_agent.uplink.birth import build_birth
from edge_agent.uplink.link import UplinkLink
from edge_agent.uplink.outbox import Outbox
from edge_agent.uplink.session import UplinkSupervisor
from edge_agent.uplink.telemetry import TelemetryForwarder
from protocols import topics
from protocols.clock import Clock, SystemClock
from protocols.codec import decode
from protocols.errors import ProtocolError
from protocols.messages import Birth, DeviceInfo, RebirthRequest

if TYPE_CHECKING:
    from pathlib import Path

M = TypeVar("M", bound=Module)

logger = logging.getLogger(__name__)

# Health fields that describe the device rather than measure it.
_NOT_TELEMETRY = frozenset({"family", "model", "last_error", "online", "alarms"})

_BOUNDS_EVERY_S = 30.0  # age bound check period; the byte bound is checked on every put
_PACKAGE_LOGGER = "edge_agent"  # set_log_level / shadow log_level act on our own loggers


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.metrics = AgentMetrics(registry)
        self.ready = asyncio.Event()  # set once storage is open and the tasks are started
        self._started = self.clock.monotonic()
        self._db = Database(config.outbox_path, synchronous=config.outbox_synchronous)
        self.kv = KvStore(self._db)
        self.outbox = Outbox(
            self._db,
            clock=self.clock,
            metrics=self.metrics,
            max_bytes=config.outbox_max_bytes,
            max_age_s=config.outbox_max_age_s,
            store_id=config.store_id,  # its headroom alarms go up as device_alarm events
        )
        self.telemetry = TelemetryForwarder(
            store_id=config.store_id,
            metrics=self.metrics,
            interval_s=config.telemetry_interval_s,
            buffer_max=config.telemetry_buffer_max,
        )
        self.uplink = UplinkSupervisor(
            config,
            kv=self.kv,
            outbox=self.outbox,
            telemetry=self.telemetry,
            metrics=self.metrics,
            clock=self.clock,
            make_birth=self._birth,
            on_downlink=self._on_downlink,
        )
        self.devices = DeviceRegistry(metrics=self.metrics, on_change=self.uplink.request_rebirth)
        self.local = LocalBusConsumer(
            config.local,
            store_id=config.store_id,
            outbox=self.outbox,
            registry=self.devices,
            telemetry=self.telemetry,
            metrics=self.metrics,
            clock=self.clock,
            batch_max=config.local_batch_max,
            queue_max=config.local_queue_max,
            keepalive_s=config.keepalive_s,
            backoff=Backoff(min_s=config.reconnect_min_s, max_s=config.reconnect_max_s),
        )
        # Drivers: configured devices (file + desired shadow ``devices``) run supervised.
        self.driver_context = AgentDriverContext(
            store_id=config.store_id,
            clock=self.clock,
            registry=self.metrics.registry,
            outbox=self.outbox,
            telemetry=self.telemetry,
            local=self.local,
            data_dir=config.data_dir,
        )
        self.drivers = DriverSupervisor(self.driver_context)
        # The modules (till, shelf, in-aisle, vision, ...): found, configured from their
        # own sections, built in dependency order (decision 0030).
        self.modules: dict[str, Module] = {}
        classes = discover()
        unknown = sorted(set(config.modules) - set(classes))
        if unknown:
            raise ConfigError(unknown[0], f"no such module (known: {', '.join(sorted(classes))})")
        wanted = {name: settings for name, cls in classes.items()
                  if (settings := settings_of(cls, config.modules.get(name))) is not None}
        for name in _dependency_order(classes, wanted):
            self.modules[name] = classes[name](self, wanted[name])
        self._desired_devices: dict[str, Any] = {}
        self._drivers_live = False  # configure() needs the running loop of _serve
        self._health_sig: dict[str, Any] = {}
        self._alarm_sig: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
        self._birth_left_out: list[str] = []
        self.shadow = AgentShadow(
            self.kv,
            store_id=config.store_id,
            clock=self.clock,
            metrics=self.metrics,
            keys={k.name: k for k in self._shadow_keys()},
            extra_reported=lambda: {"devices_health": self.drivers.health(),
                                    "tasks": self._task_report(),
                                    "alarms": self.alarms()},
        )
        self.commands = CommandHandler(
            self.kv,
            store_id=config.store_id,
            clock=self.clock,
            metrics=self.metrics,
            handlers=self._commands(),
            device_handler=self._device_command,
        )
        # The supervision tree: the kernel's parts, then the modules' (decision 0030).
        self.tasks = Supervisor("kernel", registry=self.metrics.registry, backoff=self._backoff)
        self.module_tasks = Supervisor("modules", registry=self.metrics.registry,
                                       backoff=self._backoff)
        self.broker: EmbeddedBroker | None = None
        self._metrics_server: MetricsServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    async def __aenter__(self) -> Agent:
        """Start ``run`` in a task and return once it is ready (for the demo and tests)."""
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.run(stop=self._stop), name="agent-run")
        ready = asyncio.create_task(self.ready.wait(), name="agent-ready-wait")
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._task.done():
            self._task.result()  # raises what made the start fail
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None and self._stop is not None:
            self._stop.set()
            await self._task
            self._task = self._stop = None

    def _backoff(self) -> Backoff:
        return Backoff(min_s=self.config.reconnect_min_s, max_s=self.config.reconnect_max_s)

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_server.port if self._metrics_server is not None else None

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self, *, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or cancelled), then shut down cleanly."""
        stop = stop or asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            if self.config.embedded_local_bus:
                self.broker = EmbeddedBroker(
                    host=self.config.local_bus_host, port=self.config.local_bus_port
                )
                await stack.enter_async_context(self.broker)
            await self._db.open()
            stack.push_async_callback(self._db.close)
            await self.outbox.load()
            for module in self.modules.values():  # dependency order
                await module.open()
                stack.push_async_callback(module.close)
            await self.shadow.load()
            if self.config.metrics_port:
                self._metrics_server = MetricsServer(
                    self.metrics.registry,
                    host=self.config.metrics_host,
                    port=self.config.metrics_port,
                )
                self._metrics_server.start()
                stack.callback(self._metrics_server.stop)
            await self._serve(stop)

    async def _serve(self, stop: asyncio.Event) -> None:
        """Start the supervised parts, wait for ``stop`` or a critical crash, then stop
        them in order: modules, drivers, the local bus, and last the uplink's drain."""
        uplink_stop = asyncio.Event()
        kernel, modules = self.tasks, self.module_tasks
        async with kernel, modules:
            try:
                kernel.start("uplink", lambda: self.uplink.run(uplink_stop),
                             stop=uplink_stop.set,
                             stop_timeout_s=self.config.shutdown_drain_s + 10)
                kernel.start("local-bus", self.local.run)
                kernel.start("outbox-bounds", self._enforce_bounds)
                self._drivers_live = True
                self._configure_drivers()
                kernel.start("driver-health", self._watch_driver_health)
                await self._start_modules(modules)
                self.ready.set()
                logger.info("agent %s running (version %s)", self.config.store_id,
                            self.config.agent_version)
                await _first_of(stop.wait(), kernel.failed.wait(), modules.failed.wait())
            finally:
                logger.info("agent %s stopping", self.config.store_id)
                await self._stop_modules(modules)
                # Drivers next: they may still emit events while the outbox is open.
                await kernel.stop_child("driver-health")
                self._drivers_live = False
                await self.drivers.aclose()
                await kernel.stop_child("local-bus")
                await kernel.stop_child("outbox-bounds")
                # The uplink drains for shutdown_drain_s, then waits for the Death's PUBACK.
                await kernel.stop_child("uplink")
                self.ready.clear()
        failure = kernel.failure or modules.failure
        if failure is not None:
            task, err = failure
            raise AgentFailed(task, err) from err

    async def _start_modules(self, tasks: Supervisor) -> None:
        for name, module in self.modules.items():  # dependency order
            try:
                await module.start(tasks)
            except Exception as err:  # e.g. a screen port taken: the store runs without it
                self.metrics.bad_payloads.labels(source="config", reason=name).inc()
                logger.error("module %s not started: %s", name, err, exc_info=err)
                await module.stop()

    async def _stop_modules(self, tasks: Supervisor) -> None:
        for name, module in reversed(self.modules.items()):  # users before what they use
            try:
                await module.stop()
            except Exception as err:
                logger.error("module %s did not stop cleanly: %s", name, err, exc_info=err)
        await tasks.aclose()

    async def _enforce_bounds(self) -> None:
        while True:
            await asyncio.sleep(_BOUNDS_EVERY_S)
            try:
                await self.outbox.enforce_bounds()
            except StorageError as err:
                logger.error("outbox bounds check failed: %s", err)

    # ---- birth and downlink ------------------------------------------------------------

    def _birth(self, bd_seq: int) -> Birth:
        head = Birth(
            bd_seq=bd_seq,
            ts=self.clock.now_ms(),
            agent_version=self.config.agent_version,
            shadow_version=self.shadow.version,
            outbox_depth=self.outbox.depth(),
        )
        birth, left_out = build_birth(head, self._birth_devices())
        if left_out != self._birth_left_out and left_out:
            logger.error("store %s: birth full, %d devices left out (first %s)",
                         self.config.store_id, len(left_out), left_out[0])
        self._birth_left_out = left_out
        self.metrics.birth_left_out.set(len(left_out))
        return birth

    def alarms(self) -> dict[str, Any]:
        """What an operator must act on, reported in the agent's shadow (``alarms``):
        the cloud refusing the birth, devices whose state was refused, devices the
        birth had no room for, the outbox's alarms. Empty when all is well."""
        out: dict[str, Any] = {}
        if (refusal := self.uplink.birth_refusal) is not None:
            out["birth_refused"] = {"reason": refusal.reason, "bd_seq": refusal.bd_seq,
                                    "detail": refusal.detail}
        if refused := self.devices.refused():
            out["devices_refused"] = refused
        if self._birth_left_out:
            out["birth_devices_left_out"] = len(self._birth_left_out)
        if outbox := self.outbox.alarms():  # business headroom low / past the bound (0025)
            out["outbox"] = outbox
        return out

    async def _on_downlink(self, link: UplinkLink, topic: str, payload: bytes) -> None:
        if topic.startswith(f"{topics.PREFIX}/{topics.FLEET}/"):
            await self._on_fleet(topic, payload)
            return
        try:
            where = topics.parse_uplink(topic)
        except ProtocolError as err:
            self.metrics.bad_payloads.labels(source="cloud", reason="bad_topic").inc()
            logger.warning("downlink on unexpected topic: %s", err)
            return
        if where.channel == "shadow" and where.direction == "desired":
            if where.target == "agent":
                await self.shadow.handle_desired(payload, link)
            else:
                logger.debug("desired shadow for device %s: no driver handles it yet", where.target)
        elif where.channel == "cmd" and (handler := self._targets.get(where.target or "")):
            await handler(payload)
        elif where.channel == "cmd":
            await self.commands.handle(payload, target=where.target or "", link=link)
        elif where.channel == "content":
            if (handler := self._content.get(where.kind or "")) is not None:
                await handler(payload)
            else:
                logger.info("content %s (%d bytes): no module handles it", where.kind,
                            len(payload))

    async def _on_fleet(self, topic: str, payload: bytes) -> None:
        if topic != topics.fleet("rebirth"):
            logger.debug("fleet announcement %s ignored", topic)
            return
        try:
            request = decode(payload, RebirthRequest)
        except ProtocolError as err:
            reason = getattr(err, "reason", "invalid")
            self.metrics.bad_payloads.labels(source="cloud", reason=reason).inc()
            logger.warning("bad rebirth request: %s", err)
            return
        if request.stores is None or self.config.store_id in request.stores:
            await self.uplink.publish_birth()

    # ---- shadow keys and commands ----------------------------------------------------------

    def _shadow_keys(self) -> list[ShadowKey]:
        def set_interval(value: Any) -> None:
            self.telemetry.interval_s = float(value)

        keys = [
            ShadowKey("log_level", check_log_level, _set_log_level),
            ShadowKey("telemetry_interval_s", check_interval, set_interval),
            ShadowKey("devices", check_devices, self._set_desired_devices),
        ]
        for module in self.modules.values():
            keys.extend(module.shadow_keys())
        return keys

    def _commands(self) -> dict[str, CommandSpec[Any]]:
        async def ping(_args: NoArgs) -> dict[str, Any]:
            return {"pong": True, "ts": self.clock.now_ms()}

        async def diagnostics(_args: NoArgs) -> dict[str, Any]:
            return self.diagnostics()

        async def set_log_level(args: LogLevelArgs) -> dict[str, Any]:
            _set_log_level(args.level)
            return {"level": args.level.upper()}

        async def rebirth(_args: NoArgs) -> dict[str, Any]:
            await self.uplink.publish_birth()
            return {"bd_seq": self.uplink.bd_seq}

        commands: dict[str, CommandSpec[Any]] = {
            "ping": CommandSpec(NoArgs, ping),
            "get_diagnostics": CommandSpec(NoArgs, diagnostics),
            "set_log_level": CommandSpec(LogLevelArgs, set_log_level),
            "rebirth": CommandSpec(NoArgs, rebirth),
        }
        for module in self.modules.values():
            commands.update(module.commands())
        return commands

    @property
    def _targets(self) -> dict[str, PayloadHandler]:
        return {t: h for m in self.modules.values() for t, h in m.command_targets().items()}

    @property
    def _content(self) -> dict[str, PayloadHandler]:
        return {k: h for m in self.modules.values() for k, h in m.content_handlers().items()}

    # ---- what the kernel offers its modules (kernel.module.Kernel) ------------------------

    @property
    def store_id(self) -> str:
        return self.config.store_id

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    @property
    def sink(self) -> AgentDriverContext:
        return self.driver_context

    def online(self) -> bool:
        return self.uplink.connected

    def module(self, name: str) -> Module | None:
        return self.modules.get(name)

    def get(self, cls: type[M]) -> M:
        """The running module of class ``cls`` (tests, the demo): ``agent.get(Till).pos``."""
        module = self.modules.get(cls.name)
        if not isinstance(module, cls):
            raise LookupError(f"module {cls.name} is not running on this agent")
        return module

    def _task_report(self) -> dict[str, dict[str, Any]]:
        """Each supervised task's state and restarts, for the reported shadow (the last
        error is in diagnostics: a changing text would re-report the shadow)."""
        return {name: {"state": s["state"], "restarts": s["restarts"]}
                for name, s in {**self.tasks.states(), **self.module_tasks.states()}.items()}

    def diagnostics(self) -> dict[str, Any]:
        return {
            "store_id": self.config.store_id,
            "agent_version": self.config.agent_version,
            "uptime_s": round(self.clock.monotonic() - self._started, 3),
            "uplink_connected": self.uplink.connected,
            "local_bus_connected": self.local.connected,
            "bd_seq": self.uplink.bd_seq,
            "outbox_depth": self.outbox.depth(),
            "outbox_bytes": self.outbox.bytes(),
            "outbox_oldest_age_ms": self.outbox.oldest_age_ms(),
            "outbox_last_seq": self.outbox.last_seq,
            "outbox_business_bytes": self.outbox.business_bytes(),
            "outbox_headroom_s": round(self.outbox.headroom_s()),
            "outbox_alarms": self.outbox.alarms(),
            "shadow_version": self.shadow.version,
            "devices": [d.model_dump() for d in self.devices.snapshot()],
            "devices_health": self.drivers.health(),
            "tasks": {**self.tasks.states(), **self.module_tasks.states()},
            "modules": {name: m.diagnostics() for name, m in self.modules.items()},
        }

    # ---- drivers ---------------------------------------------------------------------------

    def driver(self, device_id: str) -> Driver | None:
        """A running driver, for agent modules that use its in-process API."""
        return self.drivers.driver(device_id)

    def device_configs(self) -> list[DeviceConfig]:
        """Configured devices: the config file's, then the desired shadow's (wins by id)."""
        merged = {c.device_id: c for c in self.config.devices}
        for device_id, doc in self._desired_devices.items():
            merged[device_id] = DeviceConfig.from_dict({"id": device_id, **doc})
        return list(merged.values())

    def _set_desired_devices(self, value: Any) -> None:
        self._desired_devices = dict(value)
        if self._drivers_live:
            self._configure_drivers()

    def _configure_drivers(self) -> None:
        try:
            configs = self.device_configs()
        except DriverError as err:
            self.metrics.bad_payloads.labels(source="config", reason="bad_device").inc()
            logger.error("device configuration refused: %s", err)
            return
        for error in self.drivers.configure(configs):
            self.metrics.bad_payloads.labels(source="config", reason="bad_device").inc()
            logger.error("device not started: %s", error)
        self.uplink.request_rebirth()  # the birth lists driver-managed devices

    def _health_telemetry(self, health: dict[str, dict[str, Any]]) -> None:
        """Every driver-managed device reports its health readings (battery, RSSI, labels
        acknowledged, paper state ...) as telemetry, so the cloud sees every family's
        telemetry whether or not the device speaks MQTT itself."""
        for device_id, h in health.items():
            values = {k: v for k, v in h.items()
                      if isinstance(v, bool | int | float | str) and k not in _NOT_TELEMETRY}
            values["online"] = bool(h["online"])
            values["alarms"] = len(h["alarms"])
            self.driver_context.telemetry(str(h["family"]), device_id, values)

    async def _device_command(
        self, target: str, name: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            return await self.drivers.command(target, name, args)
        except CommandRejected as err:
            raise CommandRefused(err.detail) from err
        except DriverError as err:
            raise CommandError(err.detail) from err

    def _birth_devices(self) -> list[DeviceInfo]:
        """Local-bus devices plus driver-managed ones (a driver's entry wins by id)."""
        devices = {d.device_id: d for d in self.devices.snapshot()}
        for device_id, h in self.drivers.health().items():
            devices[device_id] = DeviceInfo(
                device_id=device_id,
                kind=h["family"],
                online=bool(h["online"]),
                model=h.get("model"),  # bounded when configured (DeviceConfig)
                last_seen=h.get("last_seen_ms"),
            )
        return [devices[k] for k in sorted(devices)]

    async def _watch_driver_health(self) -> None:
        """Refresh driver gauges; on a change, report the shadow and (online flips) rebirth."""
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            health = self.drivers.health()
            self._health_telemetry(health)
            # last_seen and live readings change all the time; these are what a reader acts on.
            sig = {
                k: (v["online"], tuple(v["alarms"]), v["restarts"], v["last_error"])
                for k, v in health.items()
            }
            alarms = (self.alarms(), self._task_report())
            if sig == self._health_sig and alarms == self._alarm_sig:
                continue
            self._alarm_sig = alarms
            online_changed = {k: v[0] for k, v in sig.items()} != {
                k: v[0] for k, v in self._health_sig.items()
            }
            self._health_sig = sig
            if online_changed:
                self.uplink.request_rebirth()
            link = self.uplink.link
            if link is not None:
                try:
                    await self.shadow.report(link)
                except AgentError as err:
                    logger.warning("could not report device health: %s", err)


class LogLevelArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: str

    @field_validator("level")
    @classmethod
    def _known(cls, value: str) -> str:
        check_log_level(value)
        return value


def _dependency_order(classes: dict[str, type[Module]], wanted: dict[str, Any]) -> list[str]:
    """Names of the wanted modules, each after the wanted modules it uses."""
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
    return order


async def _first_of(*aws: Awaitable[object]) -> None:
    """Return when the first of ``aws`` completes; the others are cancelled and awaited."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _set_log_level(value: Any) -> None:
    level = str(value).upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"bad log level {value!r}")
    logging.getLogger(_PACKAGE_LOGGER).setLevel(level)
