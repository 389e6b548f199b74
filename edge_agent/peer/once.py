"""``Once``: concurrent requests for one key share one run of the work (one upstream
download of an artifact or a price book however many boxes ask at the same moment)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

logger = logging.getLogger(__name__)


class Once(Generic[K, V]):
    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """The work's result and whether this call started it (False: it joined a run
        already going). A caller cancelled while waiting leaves the run to the others."""
        task = self._tasks.get(key)
        started = task is None
        if task is None:
            async def run() -> V:
                return await work()

            task = asyncio.create_task(run(), name=f"peer-{self.name}-{key}")
            self._tasks[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        return await asyncio.shield(task), started

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled() and task.exception() is not None:
            # every waiter gets it (and counts it); retrieved here so that a run whose
            # waiters all went away is not reported as never retrieved
            logger.debug("peer %s %s failed: %r", self.name, key, task.exception())
