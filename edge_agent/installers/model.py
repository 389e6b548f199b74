"""ONNX models (decision 0042): ``model:vision`` and ``model:positioning`` replace the
model a running module uses, checked before and after, replaced back on failure.

    keep (a thread)     copied out of the cache into <data_dir>/models: the box's own
    load (a thread)     the copy loads and meets the module's contract: inputs,
                        outputs, a smoke inference on a fixed input  -> else refused
    swap (the loop)     one assignment: no inference sees half of each model
    probe (a thread)    a realistic input through the module's own path
                                                    -> else swapped back: replaced_back
    record (a thread)   the module starts with it from now on (``InstalledModels``)

The contract is the module's (``VisionModel.check``, ``PositionModel.check`` and the
slots in ``edge_agent/inference/*/slot.py``), not this file's. One install per model at
a time. Outcomes: ``storefleet_model_installs_total{model,result}`` and the log.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.inference.installed import Installed, InstalledModels, ModelRejected, ModelSlot
from edge_agent.installers import Offer
from protocols.messages import RolloutStep

if TYPE_CHECKING:
    from edge_agent.kernel.module import Kernel

logger = logging.getLogger(__name__)

# The module that runs each model (``model:<name>`` targets, protocols/artifacts.py).
MODULE_OF = {"vision": "vision", "positioning": "in_aisle"}


class ModelInstaller:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.installed = InstalledModels(kernel.data_dir, registry=kernel.registry)
        self._locks: dict[str, asyncio.Lock] = {}

    def _slot(self, target: str) -> tuple[str, ModelSlot[Any] | None, str | None]:
        """(model name, its slot, or why there is none)."""
        name = target.partition(":")[2]
        module_name = MODULE_OF.get(name)
        if module_name is None:
            return name, None, f"no module runs a {target} model"
        module = self.kernel.module(module_name)
        if module is None:
            return name, None, (f"{target} runs in the {module_name} module, which does "
                                "not run on this box")
        slot_of = getattr(module, "model_slot", None)
        slot: ModelSlot[Any] | None = slot_of(name) if callable(slot_of) else None
        if slot is None:
            return name, None, (f"the {module_name} module is not running a model "
                                "(see its start-up log)")
        return name, slot, None

    def refuse(self, offer: Offer) -> str | None:
        if offer.device != "agent":
            return "a model artifact installs on the agent (device \"agent\")"
        return self._slot(offer.target)[2]

    def busy(self, offer: Offer) -> str | None:
        """Never: the swap is one assignment between two inferences, so nothing in use
        has to be waited for (the checks cost a few inferences in a worker thread)."""
        return None

    async def install(self, offer: Offer, path: Path) -> tuple[RolloutStep, str]:
        name, slot, why = self._slot(offer.target)
        if slot is None:  # the module stopped since the offer was accepted
            return self._done(offer, name, "failed", f"not installed: {why}")
        async with self._locks.setdefault(name, asyncio.Lock()):
            return await self._install(offer, name, slot, path)

    async def _install(self, offer: Offer, name: str, slot: ModelSlot[Any],
                       path: Path) -> tuple[RolloutStep, str]:
        try:
            kept = await asyncio.to_thread(self.installed.keep, name, path, offer.sha256)
        except OSError as err:
            return self._done(offer, name, "failed", f"not stored: {err}")
        try:
            candidate = await asyncio.to_thread(slot.load, kept)  # onnxruntime blocks
        except ModelRejected as err:
            await asyncio.to_thread(self.installed.discard, name, offer.sha256)
            return self._done(offer, name, "refused", f"refused: {err.detail}")
        previous = slot.swap(candidate)
        try:
            await asyncio.to_thread(slot.probe)
        except ModelRejected as err:
            slot.swap(previous)
            await asyncio.to_thread(self.installed.discard, name, offer.sha256)
            return self._done(offer, name, "replaced_back",
                              f"replaced back by the previous model: {err.detail}")
        except BaseException:  # a bug (counted by the updates module): never left in place
            slot.swap(previous)
            raise
        try:
            await asyncio.to_thread(self.installed.record, name, Installed(
                sha256=offer.sha256, version=offer.version, rollout_id=offer.rollout_id))
        except OSError as err:  # running now, but would not be after a restart
            slot.swap(previous)
            return self._done(offer, name, "failed", f"not recorded, replaced back: {err}")
        return self._done(offer, name, "succeeded", f"{name} model {offer.version}")

    def _done(self, offer: Offer, name: str, result: str,
              detail: str) -> tuple[RolloutStep, str]:
        self.installed.metrics.installs.labels(model=name, result=result).inc()
        if result == "succeeded":
            logger.info("rollout %s: %s", offer.rollout_id, detail)
            return "succeeded", detail
        logger.error("rollout %s: %s model %s (%s) %s: %s", offer.rollout_id, name,
                     offer.version, offer.sha256[:12], result, detail)
        return "failed", detail
