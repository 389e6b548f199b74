"""The kernel: ``Agent`` runs the store box's storage, local bus, uplink, shadow, commands
and drivers, supervised, and the modules configured beside them (decision 0030).

    agent = Agent(AgentConfig(store_id="s-001", data_dir=path, local_bus="mqtt://..."))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop=stop))
    await agent.ready.wait()
    ...
    stop.set(); await task        # drains, publishes Death, closes everything

    async with Agent(config) as agent:   # the same, as a context manager
        agent.get(Till).pos ...

What runs where: ``kernel/supervisor.py`` (the supervision tree), ``kernel/module.py``
(the module contract and discovery), ``kernel/routing.py`` (downlink by declaration),
``kernel/devices.py`` (driver-managed devices), ``kernel/builtin.py`` (the kernel's own
commands and shadow keys), ``modules/`` (the till, shelf sync, in-aisle, vision).

Shutdown order: modules (users before what they use), drivers, the local bus (unacked
messages stay at the local broker), then the uplink drains the outbox for
``shutdown_drain_s`` and publishes the Death; last the database, the embedded broker
and the metrics endpoint close. A critical task's crash takes the same path and then
raises ``AgentFailed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

import edge_agent.drivers  # noqa: F401 - loads every driver family into DRIVERS
from edge_agent.commands import CommandHandler
from edge_agent.config import AgentConfig
from edge_agent.drivers.base import DeviceConfig, Driver
from edge_agent.drivers.capabilities import BUSY
from edge_agent.drivers.context import AgentDriverContext
from edge_agent.drivers.supervisor import DriverSupervisor
from edge_agent.errors import AgentError, AgentFailed, StorageError
from edge_agent.kernel.builtin import kernel_commands, kernel_shadow_keys
from edge_agent.kernel.device_shadow import DeviceShadows
from edge_agent.kernel.devices import DeviceHub
from edge_agent.kernel.logring import LogRing
from edge_agent.kernel.module import Module, load_modules
from edge_agent.kernel.routing import Downlink
from edge_agent.kernel.supervisor import Supervisor, first_of
from edge_agent.localbus.consumer import LocalBusConsumer
from edge_agent.localbus.embedded import EmbeddedBroker
from edge_agent.localbus.registry import DeviceRegistry
from edge_agent.metrics import AgentMetrics, MetricsServer
from edge_agent.shadow import AgentShadow
from edge_agent.storage import Database, KvStore
from edge_agent.uplink.birth import build_birth
from edge_agent.uplink.outbox import Outbox
from edge_agent.uplink.session import UplinkSupervisor
from edge_agent.uplink.telemetry import TelemetryForwarder
from protocols.backoff import Backoff
from protocols.clock import Clock, SystemClock
from protocols.messages import Birth

M = TypeVar("M", bound=Module)

logger = logging.getLogger(__name__)

_BOUNDS_EVERY_S = 30.0  # age bound check period; the byte bound is checked on every put
# The exit code of a clean stop that asked to be started again (request_restart): the
# process supervisor restarts on any exit; this one tells the log it was wanted (EX_TEMPFAIL).
RESTART_EXIT_CODE = 75


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
        self.outbox = Outbox(self._db, clock=self.clock, metrics=self.metrics,
                             max_bytes=config.outbox_max_bytes,
                             max_age_s=config.outbox_max_age_s,
                             store_id=config.store_id)  # headroom alarms go up as events
        self.telemetry = TelemetryForwarder(store_id=config.store_id, metrics=self.metrics,
                                            interval_s=config.telemetry_interval_s,
                                            buffer_max=config.telemetry_buffer_max)
        self.uplink = UplinkSupervisor(config, kv=self.kv, outbox=self.outbox,
                                       telemetry=self.telemetry, metrics=self.metrics,
                                       clock=self.clock, make_birth=self._birth,
                                       on_downlink=self._on_downlink)
        self.devices = DeviceRegistry(metrics=self.metrics, on_change=self.uplink.request_rebirth)
        self.local = LocalBusConsumer(
            config.local, store_id=config.store_id, outbox=self.outbox, registry=self.devices,
            telemetry=self.telemetry, metrics=self.metrics, clock=self.clock,
            batch_max=config.local_batch_max, queue_max=config.local_queue_max,
            keepalive_s=config.keepalive_s, backoff=self._backoff())
        # Drivers: configured devices (file + desired shadow ``devices``) run supervised.
        self.driver_context = AgentDriverContext(
            store_id=config.store_id, clock=self.clock, registry=self.metrics.registry,
            outbox=self.outbox, telemetry=self.telemetry, local=self.local,
            data_dir=config.data_dir)
        self.drivers = DriverSupervisor(self.driver_context)
        self.hub = DeviceHub(configured=config.devices, drivers=self.drivers, local=self.devices,
                             context=self.driver_context, metrics=self.metrics,
                             request_rebirth=self.uplink.request_rebirth,
                             report=self._report_shadow, signature=self._report_signature,
                             interval_s=config.health_interval_s,
                             own_readings=lambda: {
                                 "outbox_depth": self.outbox.depth(),
                                 "outbox_oldest_age_s": self.outbox.oldest_age_ms() / 1000})
        # The modules (till, shelf, in-aisle, vision, ...): found, configured from their
        # own sections, built in dependency order (decision 0030).
        self.modules: dict[str, Module] = {}
        self.modules = load_modules(self, config.modules)
        self._birth_left_out: list[str] = []
        keys = kernel_shadow_keys(set_telemetry_interval=self._set_telemetry_interval,
                                  set_devices=self.hub.set_desired)
        keys += [key for module in self.modules.values() for key in module.shadow_keys()]
        self.shadow = AgentShadow(
            self.kv, store_id=config.store_id, clock=self.clock, metrics=self.metrics,
            keys={k.name: k for k in keys},
            extra_reported=lambda: {"devices_health": self.drivers.health(),
                                    "tasks": self._task_report(), "alarms": self.alarms()})
        self.logs = LogRing()  # recent lines for get_logs, attached while run() runs
        commands = kernel_commands(now_ms=self.clock.now_ms, diagnostics=self.diagnostics,
                                   rebirth=self._rebirth, logs=self.logs)
        for module in self.modules.values():
            commands.update(module.commands())
        self.commands = CommandHandler(self.kv, store_id=config.store_id, clock=self.clock,
                                       metrics=self.metrics, handlers=commands,
                                       device_handler=self.hub.command)
        self.device_shadows = DeviceShadows(store_id=config.store_id, drivers=self.drivers,
                                            clock=self.clock, metrics=self.metrics)
        self.downlink = Downlink(store_id=config.store_id, shadow=self.shadow,
                                 device_shadows=self.device_shadows,
                                 commands=self.commands, modules=self.modules.values(),
                                 metrics=self.metrics, rebirth=self.uplink.publish_birth)
        # The supervision tree: the kernel's parts, then the modules' (decision 0030).
        self.tasks = Supervisor("kernel", registry=self.metrics.registry, backoff=self._backoff)
        self.module_tasks = Supervisor("modules", registry=self.metrics.registry,
                                       backoff=self._backoff)
        self.broker: EmbeddedBroker | None = None
        self._metrics_server: MetricsServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._restart = asyncio.Event()
        self.restart_reason: str | None = None  # set by request_restart

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

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_server.port if self._metrics_server is not None else None

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self, *, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or cancelled), then shut down cleanly."""
        stop = stop or asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(self.logs.attached())
            if self.config.embedded_local_bus:
                self.broker = EmbeddedBroker(host=self.config.local_bus_host,
                                             port=self.config.local_bus_port)
                await stack.enter_async_context(self.broker)
            await self._db.open()
            stack.push_async_callback(self._db.close)
            await self.outbox.load()
            for module in self.modules.values():  # dependency order
                await module.open()
                stack.push_async_callback(module.close)
            await self.shadow.load()
            if self.config.metrics_port:
                self._metrics_server = MetricsServer(self.metrics.registry,
                                                     host=self.config.metrics_host,
                                                     port=self.config.metrics_port)
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
                self.hub.configure()
                kernel.start("driver-health", self.hub.watch)
                kernel.start("device-shadows", self.device_shadows.run)
                await self._start_modules(modules)
                self.ready.set()
                logger.info("agent %s running (version %s)", self.config.store_id,
                            self.config.agent_version)
                await first_of(stop.wait(), kernel.failed.wait(), modules.failed.wait(),
                               self._restart.wait())
            finally:
                logger.info("agent %s stopping", self.config.store_id)
                await self._stop_modules(modules)
                # Drivers next: they may still emit events while the outbox is open.
                await kernel.stop_child("driver-health")
                await kernel.stop_child("device-shadows")
                await self.hub.aclose()
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

    def _backoff(self) -> Backoff:
        return Backoff(min_s=self.config.reconnect_min_s, max_s=self.config.reconnect_max_s)

    # ---- birth, downlink, reports ----------------------------------------------------

    def _birth(self, bd_seq: int) -> Birth:
        head = Birth(bd_seq=bd_seq, ts=self.clock.now_ms(),
                     agent_version=self.config.agent_version,
                     shadow_version=self.shadow.version, outbox_depth=self.outbox.depth())
        birth, left_out = build_birth(head, self.hub.birth_devices())
        if left_out != self._birth_left_out and left_out:
            logger.error("store %s: birth full, %d devices left out (first %s)",
                         self.config.store_id, len(left_out), left_out[0])
        self._birth_left_out = left_out
        self.metrics.birth_left_out.set(len(left_out))
        return birth

    async def _rebirth(self) -> int:
        await self.uplink.publish_birth()
        return self.uplink.bd_seq

    async def _on_downlink(self, link: Any, topic: str, payload: bytes) -> None:
        await self.downlink(link, topic, payload)

    def _set_telemetry_interval(self, seconds: float) -> None:
        self.telemetry.interval_s = seconds

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

    def _task_report(self) -> dict[str, dict[str, Any]]:
        """Each supervised task's state and restarts, for the reported shadow (the last
        error is in diagnostics: a changing text would re-report the shadow)."""
        return {name: {"state": s["state"], "restarts": s["restarts"]}
                for name, s in {**self.tasks.states(), **self.module_tasks.states()}.items()}

    def _report_signature(self) -> object:
        """What, besides device health, makes the shadow worth reporting again."""
        return self.alarms(), self._task_report()

    async def _report_shadow(self) -> None:
        link = self.uplink.link
        if link is not None:
            try:
                await self.shadow.report(link)
            except AgentError as err:
                logger.warning("could not report the shadow: %s", err)

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

    def healthy(self) -> bool:
        """Serving as it should (a self-update's trial, decision 0041): started, the
        uplink up with the cloud's answer to the birth (when awaited), and no supervised
        task failed or waiting to restart."""
        if not (self.ready.is_set() and self.uplink.connected):
            return False
        if self.config.await_cloud_ready and not self.uplink.cloud_ready:
            return False
        states = {**self.tasks.states(), **self.module_tasks.states()}
        return all(s["state"] in ("running", "stopped") for s in states.values())

    def module(self, name: str) -> Module | None:
        return self.modules.get(name)

    def busy(self) -> str | None:
        """Why a restart now would cut something short (decision 0043): a device that
        reports busy (a vend, a flash, a cart in use), then a module (a sale at the till)."""
        for device in self.drivers.find(BUSY):
            if (reason := device.busy_reason()) is not None:
                return f"{device.device_id}: {reason}"
        for name, module in self.modules.items():
            if (reason := module.busy()) is not None:
                return f"{name}: {reason}"
        return None

    def request_restart(self, reason: str) -> None:
        """Stop as on SIGTERM (the outbox drained and closed), then the CLI exits with
        ``RESTART_EXIT_CODE`` so the supervisor starts the agent again (decision 0041)."""
        logger.warning("agent %s restarting: %s", self.config.store_id, reason)
        self.restart_reason = reason
        self._restart.set()

    def get(self, cls: type[M]) -> M:
        """The running module of class ``cls`` (tests, the demo): ``agent.get(Till).pos``."""
        module = self.modules.get(cls.name)
        if not isinstance(module, cls):
            raise LookupError(f"module {cls.name} is not running on this agent")
        return module

    def driver(self, device_id: str) -> Driver | None:
        """A running driver (tests, diagnostics); modules find drivers by capability."""
        return self.drivers.driver(device_id)

    def device_configs(self) -> list[DeviceConfig]:
        return self.hub.configs()
