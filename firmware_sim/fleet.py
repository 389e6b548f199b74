"""Many store boxes in one process, for the rollout bench (``bench/rollout.py``,
decision 0045).

    async with SimulatedFleet(root, boxes=100, cloud_broker=url, local_bus=url,
                              api_url=api, token=device_token, trusted_keys=keys) as fleet:
        fleet.stores                      # their store ids

Each box is the production agent (``edge_agent.app.Agent``: uplink session, outbox,
commands, the ``updates`` module and its verified ``ArtifactCache``): an offer arrives
over MQTT as ``install_artifact``, the box downloads the bytes with ``Range`` into its
own cache, checks the signature, the sha256 and the target, and reports every step as a
``rollout_status`` event through its outbox to ingest. Only the last step is the
simulator's: these boxes have no device to flash, so ``KeepInstaller`` takes the
verified file as installed. A flash, a venv install or a model check costs the box its
own time, not the cloud anything; what the bench measures is the distribution.

The boxes share one local-bus broker when they run no device: nothing is published on
it. The local topics carry no store id, so boxes with devices each get their own
(``local_bus`` a list, one URL per box; ``bench/content.py`` runs an audio unit per
store). ``modules`` adds modules beside ``updates`` and ``devices`` gives a box its
devices, by store id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry

from edge_agent.app import Agent
from edge_agent.config import AgentConfig
from edge_agent.drivers.base import DeviceConfig
from edge_agent.installers import Offer
from edge_agent.modules.updates import Updates
from protocols.artifacts import ArtifactKind
from protocols.messages import RolloutStep

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0  # each box drains its outbox for shutdown_drain_s, then stops


class KeepInstaller:
    """The verified file in the box's cache is the install (a box with no device)."""

    def refuse(self, offer: Offer) -> str | None:
        return None

    def busy(self, offer: Offer) -> str | None:
        return None  # nothing to wait for: no device is in use

    async def install(self, offer: Offer, path: Path) -> tuple[RolloutStep, str]:
        size = await asyncio.to_thread(lambda: path.stat().st_size)
        return "succeeded", f"kept {size} bytes (fleet simulator)"


@dataclass
class SimulatedFleet:
    root: Path
    boxes: int
    cloud_broker: str
    local_bus: str | Sequence[str]  # one for every box, or one per box
    api_url: str
    token: str
    trusted_keys: list[str]
    kind: ArtifactKind = ArtifactKind.FIRMWARE  # what KeepInstaller stands in for
    prefix: str = "box"
    modules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # beside updates
    devices: Callable[[str], list[dict[str, Any]]] | None = None  # a store's devices
    agents: list[Agent] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def stores(self) -> list[str]:
        return [agent.config.store_id for agent in self.agents]

    def _agent(self, i: int) -> Agent:
        store = f"{self.prefix}-{i:04d}"
        bus = self.local_bus if isinstance(self.local_bus, str) else self.local_bus[i]
        devices = [DeviceConfig.from_dict(d) for d in self.devices(store)] if self.devices else []
        config = AgentConfig(
            store_id=store, data_dir=self.root / store, cloud_url=self.cloud_broker,
            local_bus=bus, metrics_port=0,  # a hundred boxes, no ports
            devices=tuple(devices),
            modules={**self.modules,
                     "updates": {"cloud_api": self.api_url, "cloud_api_token": self.token,
                                 "trusted_keys": self.trusted_keys}})
        agent = Agent(config, registry=CollectorRegistry())
        updates = agent.modules["updates"]
        assert isinstance(updates, Updates)
        updates.installers[self.kind] = KeepInstaller()
        return agent

    async def __aenter__(self) -> SimulatedFleet:
        try:
            for i in range(self.boxes):
                agent = self._agent(i)
                self.agents.append(agent)
                self._tasks.append(asyncio.create_task(
                    agent.run(stop=self._stop), name=f"fleet-{agent.config.store_id}"))
            while not all(a.ready.is_set() for a in self.agents):
                if done := [t for t in self._tasks if t.done()]:
                    done[0].result()  # an agent that ended before it was ready: its error
                    raise RuntimeError(f"{done[0].get_name()} ended before it was ready")
                await asyncio.sleep(0.05)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        self._stop.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
        for task in self._tasks:
            if not task.done():
                logger.warning("%s did not stop in %.0f s; cancelled", task.get_name(),
                               STOP_TIMEOUT_S)
                task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for task, result in zip(self._tasks, results, strict=True):
            if isinstance(result, Exception):
                logger.error("%s failed: %r", task.get_name(), result)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
