"""Background tasks of the API process (in-process ingest, retail jobs), supervised.

A task that raises is logged with its traceback, counted
(``storefleet_task_restarts_total{task}``, the agent's name for the same thing) and run
again after a capped backoff; ``/healthz`` shows each task's state and answers 503 while
one is down. Before, an ``OverflowError`` from the reconnect backoff ended the ingest
task for good while ``/healthz`` kept answering ok (issue 13, failure 4; decision 0031).

    tasks = TaskSupervisor(registry, backoff=Backoff(min_s=1, max_s=60))
    task = tasks.start("ingest", lambda: worker.run(stop), stop=stop)
    tasks.states["ingest"].state        # "running", "restarting" or "stopped"
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter

from protocols.backoff import Backoff

logger = logging.getLogger(__name__)

TaskStateName = Literal["running", "restarting", "stopped"]

# A task that ran this long before it crashed was healthy: its next restart starts again
# at the shortest delay instead of where the last crash loop left the backoff.
STABLE_S = 60.0


@dataclass
class TaskState:
    """What ``/healthz`` shows of one supervised task."""

    state: TaskStateName = "running"
    restarts: int = 0
    last_error: str | None = None  # "OverflowError: ..." of the last crash, kept after it


class TaskSupervisor:
    def __init__(self, registry: CollectorRegistry, *, backoff: Callable[[], Backoff]) -> None:
        self._backoff = backoff
        self.restarts = Counter(
            "storefleet_task_restarts",
            "background tasks of the API process that crashed and were started again",
            ["task"], registry=registry)
        self.states: dict[str, TaskState] = {}

    def start(self, name: str, run: Callable[[], Awaitable[None]], *,
              stop: asyncio.Event) -> asyncio.Task[None]:
        """Run ``run()`` as the task ``name`` until ``stop`` is set, restarting it when it
        raises (or returns before ``stop``). Await the task after setting ``stop``."""
        self.states[name] = TaskState()
        self.restarts.labels(task=name)  # the series exists (at 0) before any crash
        return asyncio.create_task(self._supervise(name, run, stop), name=f"cloud-{name}")

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]],
                         stop: asyncio.Event) -> None:
        state = self.states[name]
        backoff = self._backoff()
        while not stop.is_set():
            state.state = "running"
            started = time.monotonic()
            try:
                await run()
            except Exception as err:  # any crash: logged, counted, restarted below
                error = f"{type(err).__name__}: {err}"
                logger.error("task %s crashed: %s; restarting it", name, error, exc_info=err)
            else:
                if stop.is_set():
                    break
                error = "ended without being stopped"
                logger.error("task %s %s; restarting it", name, error)
            if time.monotonic() - started >= STABLE_S:
                backoff.reset()
            state.state, state.last_error = "restarting", error
            state.restarts += 1
            self.restarts.labels(task=name).inc()
            delay = backoff.next()
            logger.info("task %s restarts in %.1f s", name, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
        state.state = "stopped"
