"""Many simulated stores in one process: start them at a bounded pace, make events at
the fleet's rate, cut every connection at once on demand (a reconnect storm), and
write what they count to a status file for a bench or an operator to read.

The rate is per store (events per second); the fleet draws the stores that make an
event each tick, so 5,000 stores need one timer, not 5,000."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from firmware_sim.loadgen.identity import StoreIdentity
from firmware_sim.loadgen.snapshots import SnapshotSource
from firmware_sim.loadgen.stats import FleetStats
from firmware_sim.loadgen.store import SimStore, StoreSettings
from protocols.clock import Clock, SystemClock

logger = logging.getLogger(__name__)

TICK_S = 0.1  # how often the fleet draws the stores that make an event
STATUS_EVERY_S = 0.5  # how often the status file is written
START_PER_S = 500.0  # stores started per second: a fleet's first connect is no storm
STOP_TIMEOUT_S = 30.0  # each store publishes its Death; then the rest are cancelled


class LoadFleet:
    def __init__(self, identities: Sequence[StoreIdentity], *, settings: StoreSettings,
                 rate_per_store: float, snapshots: SnapshotSource | None = None,
                 clock: Clock | None = None, seed: int = 7,
                 status_file: Path | None = None, start_per_s: float = START_PER_S) -> None:
        self._clock = clock or SystemClock()
        self._rng = random.Random(seed)
        self.stats = FleetStats(stores=len(identities))
        self.stores = [SimStore(i, settings=settings, stats=self.stats, clock=self._clock,
                                rng=random.Random(f"{seed}-{i.store_id}"), snapshots=snapshots)
                       for i in identities]
        self._rate = rate_per_store
        self._status_file = status_file
        self._start_per_s = start_per_s
        self._storm = asyncio.Event()

    def storm(self) -> None:
        """Cut every store's connection at once; they reconnect with jittered backoff."""
        self._storm.set()

    def status(self) -> dict[str, Any]:
        self.stats.ready = sum(1 for s in self.stores if s.ready)
        self.stats.outbox_depth = sum(len(s.outbox) for s in self.stores)
        oldest = [t for s in self.stores if (t := s.outbox.oldest_ts()) is not None]
        # The oldest event still waiting in any outbox (ms): a bench knows everything
        # made before a moment has been delivered once this is later than it.
        return {**self.stats.as_dict(), "ts": time.time(),
                "outbox_oldest_ts": min(oldest, default=None)}

    async def run(self, stop: asyncio.Event) -> None:
        """Run every store until ``stop``; then each ends with its own Death."""
        stores_stop = asyncio.Event()
        tasks = []
        helpers = [asyncio.create_task(self._make_events(stop), name="fleet-events"),
                   asyncio.create_task(self._storms(stop), name="fleet-storms"),
                   asyncio.create_task(self._write_status(stop), name="fleet-status")]
        try:
            for n, store in enumerate(self.stores):
                if stop.is_set():
                    break
                tasks.append(asyncio.create_task(store.run(stores_stop),
                                                 name=f"store-{store.store_id}"))
                if (n + 1) % 50 == 0:  # start at the given pace, 50 at a time
                    await asyncio.sleep(50 / self._start_per_s)
            await stop.wait()
        finally:
            stores_stop.set()
            done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S) if tasks \
                else (set(), set())
            for task in pending:
                task.cancel()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*tasks, *helpers, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    self.stats.count("store_crashed")
                    logger.error("%s ended: %r", task.get_name(), task.exception())
            await self._write(self.status())

    async def _make_events(self, stop: asyncio.Event) -> None:
        carry = 0.0
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not stop.is_set():
            await asyncio.sleep(TICK_S)
            # By the time that passed, not the tick asked for: a busy loop wakes late,
            # and the fleet must still offer its rate.
            now = loop.time()
            carry += self._rate * len(self.stores) * (now - last)
            last = now
            count, carry = int(carry), carry - int(carry)
            for store in self._rng.choices(self.stores, k=count) if count else ():
                try:
                    store.make_event()
                except Exception as err:  # a bug in one event must not stop the fleet
                    self.stats.count("make_event_failed")
                    logger.exception("store %s: event not made: %s", store.store_id, err)

    async def _storms(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._storm.wait()
            self._storm.clear()
            self.stats.storms += 1
            logger.info("storm: cutting %d connections", self.stats.connected)
            for store in self.stores:
                store.storm()

    async def _write_status(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._write(self.status())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATUS_EVERY_S)

    async def _write(self, status: dict[str, Any]) -> None:
        if self._status_file is None:
            return
        path = self._status_file
        text = json.dumps(status)

        def write() -> None:  # a rename, so a reader never sees half a file
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)

        try:
            await asyncio.to_thread(write)
        except OSError as err:
            self.stats.count("status_write_failed")
            logger.warning("status file %s not written: %s", path, err)


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (a socket per store; a
    broker started from here inherits it); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return max(soft, hard)
