"""One supervision tree for the agent's long-running parts (issue 13, decision 0030).

    tree = Supervisor("kernel", metrics=metrics)
    async with tree:
        tree.start("outbox-bounds", outbox_bounds_loop)                  # restarted on a crash
        tree.start("local-bus", local.run, critical=True)                # a crash stops the agent
        tree.start("uplink", lambda: uplink.run(stop), stop=stop.set)    # stopped by its own event
        await first_of(stop.wait(), tree.failed.wait())
    # leaving the block stops every child (its stop hook, else cancel) and awaits it

A child is a coroutine factory. When it raises, the crash is logged with its traceback
and counted (``storefleet_task_restarts_total{task}``); then either it is started again
after a capped, jittered backoff (reset once it has run a minute without failing), or,
for a child marked ``critical``, the tree records the failure and sets ``failed``: its
owner stops the agent cleanly and exits non-zero. A child that returns has stopped; it is
not restarted (a loop that ends on its own is logged, since it was meant to run for good).

Every child's state (running, restarting, stopped, failed; restarts; last error) is in
``states()``, which the agent's diagnostics and reported shadow show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

from protocols.backoff import Backoff

logger = logging.getLogger(__name__)

State = Literal["running", "restarting", "stopped", "failed"]
# A child that ran this long since its last start is healthy again: backoff resets.
HEALTHY_AFTER_S = 60.0


class TreeMetrics:
    """Shared by every tree of one registry (the kernel's and each module's)."""

    _by_registry: dict[int, TreeMetrics] = {}

    def __init__(self, registry: CollectorRegistry) -> None:
        self.restarts = Counter(
            "storefleet_task_restarts_total",
            "crashes of a supervised task (each restarted, or stopping the agent if critical)",
            ["task"], registry=registry)
        self.running = Gauge("storefleet_task_running", "1 while a supervised task runs",
                             ["task"], registry=registry)

    @classmethod
    def of(cls, registry: CollectorRegistry) -> TreeMetrics:
        key = id(registry)
        if key not in cls._by_registry:
            cls._by_registry[key] = cls(registry)
        return cls._by_registry[key]


@dataclass
class Child:
    name: str
    factory: Callable[[], Awaitable[None]]
    critical: bool
    stop: Callable[[], None] | None
    stop_timeout_s: float
    task: asyncio.Task[None] | None = None
    state: State = "running"
    restarts: int = 0
    last_error: str | None = None
    stopping: bool = False  # asked to stop: ending now is expected


class Supervisor:
    def __init__(
        self,
        name: str,
        *,
        registry: CollectorRegistry,
        backoff: Callable[[], Backoff] | None = None,
    ) -> None:
        self.name = name
        self._metrics = TreeMetrics.of(registry)
        self._backoff = backoff or (lambda: Backoff(min_s=0.5, max_s=30.0))
        self._children: dict[str, Child] = {}
        self.failed = asyncio.Event()  # a critical child crashed
        self.failure: tuple[str, BaseException] | None = None
        self._open = False

    async def __aenter__(self) -> Supervisor:
        self._open = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def start(
        self,
        name: str,
        factory: Callable[[], Awaitable[None]],
        *,
        critical: bool = False,
        stop: Callable[[], None] | None = None,
        stop_timeout_s: float = 10.0,
    ) -> None:
        """Run ``factory()`` as a supervised child. ``stop``: how to ask it to end (else it
        is cancelled); it gets ``stop_timeout_s`` to do so, then it is cancelled."""
        if not self._open:
            raise RuntimeError(f"supervisor {self.name} is not running")
        if name in self._children and self._children[name].state in ("running", "restarting"):
            raise ValueError(f"task {name!r} already runs in {self.name}")
        child = Child(name, factory, critical, stop, stop_timeout_s)
        self._children[name] = child
        child.task = asyncio.create_task(self._supervise(child), name=f"{self.name}:{name}")

    async def stop_child(self, name: str) -> None:
        """Stop one child and await its end (cancel and await, never cancel and forget)."""
        child = self._children.get(name)
        if child is not None:
            await self._stop(child)

    async def aclose(self) -> None:
        """Stop every child, newest first, and await each."""
        self._open = False
        for child in reversed(list(self._children.values())):
            await self._stop(child)

    def states(self) -> dict[str, dict[str, Any]]:
        return {c.name: {"state": c.state, "critical": c.critical, "restarts": c.restarts,
                         "last_error": c.last_error} for c in self._children.values()}

    # ---- internals -------------------------------------------------------------------

    async def _stop(self, child: Child) -> None:
        task = child.task
        if task is None or task.done():
            return
        child.stopping = True
        if child.stop is not None:
            child.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), child.stop_timeout_s)
            if not task.done():
                logger.warning("%s: task %s did not stop within %.0f s: cancelled", self.name,
                               child.name, child.stop_timeout_s)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if child.state == "running":
            child.state = "stopped"

    async def _supervise(self, child: Child) -> None:
        backoff = self._backoff()
        gauge = self._metrics.running.labels(task=child.name)
        while True:
            started = time.monotonic()
            child.state = "running"
            gauge.set(1)
            try:
                await child.factory()
            except asyncio.CancelledError:
                gauge.set(0)
                child.state = "stopped"
                raise
            except Exception as err:  # the isolation boundary: a crash of one part
                gauge.set(0)
                child.restarts += 1
                child.last_error = f"{type(err).__name__}: {err}"[:300]
                self._metrics.restarts.labels(task=child.name).inc()
                if child.critical:
                    child.state = "failed"
                    logger.critical("%s: critical task %s crashed; stopping", self.name,
                                    child.name, exc_info=err)
                    if self.failure is None:
                        self.failure = (child.name, err)
                    self.failed.set()
                    return
                if time.monotonic() - started >= HEALTHY_AFTER_S:
                    backoff.reset()
                delay = backoff.next()
                child.state = "restarting"
                logger.error("%s: task %s crashed (restart %d in %.1f s)", self.name,
                             child.name, child.restarts, delay, exc_info=err)
                await asyncio.sleep(delay)
                continue
            gauge.set(0)
            child.state = "stopped"
            if self._open and not child.stopping:
                logger.warning("%s: task %s ended on its own", self.name, child.name)
            return


async def first_of(*aws: Awaitable[object]) -> None:
    """Return when the first of ``aws`` completes; the others are cancelled and awaited."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
