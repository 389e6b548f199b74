"""Product recognition (``[vision]``; decision 0011): carts' JPEG snapshots on the local
bus and fixed cameras are classified by the ONNX model in a worker thread; a cart's
sightings feed the in-aisle coupon triggers and the "seen but not scanned" check.

    [vision]
    model = "/var/lib/storefleet/vision.onnx"     # unset: the model shipped in models/vision
    cameras = { entrance = "rtsp://10.0.0.5/stream" }
    min_confidence = 0.6

A ``model:vision`` rollout replaces the model while the pipeline runs, and the box
starts with it from then on (``edge_agent/installers/model.py``, decision 0042).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from edge_agent.kernel.module import Module, ModuleSettings
from edge_agent.modules.in_aisle import InAisleModule
from protocols.topics import valid_id

if TYPE_CHECKING:
    from edge_agent.inference.vision import VisionModel, VisionPipeline
    from edge_agent.inference.vision.slot import VisionSlot
    from edge_agent.kernel.module import Kernel
    from protocols.vision import CategorySeen

logger = logging.getLogger(__name__)


class VisionSettings(ModuleSettings):
    model: Path | None = None
    cameras: dict[str, str | int] = Field(default_factory=dict)  # id -> device, file, URL
    min_confidence: float = Field(default=0.6, ge=0.0, le=1.0)
    # onnxruntime intra-op threads; None: min(physical cores, 2); never more than the
    # physical cores (decision 0011: hyper-threads doubled the latency on 2 cores)
    threads: int | None = Field(default=None, ge=1)

    @field_validator("cameras")
    @classmethod
    def _camera_ids(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for camera in value:
            if not valid_id(camera):
                raise ValueError(f"{camera!r} is not a valid camera id")
        return value


class Vision(Module):
    name = "vision"
    Settings = VisionSettings
    after = ("in_aisle",)

    def __init__(self, kernel: Kernel, settings: VisionSettings) -> None:
        super().__init__(kernel, settings)
        self.pipeline: VisionPipeline | None = None
        self.threads: int | None = None

    async def start(self, tasks: Any) -> None:
        # Imported here: OpenCV and onnxruntime load only on boxes that run vision.
        from edge_agent.inference.vision import VisionError, VisionPipeline
        from edge_agent.inference.vision.model import physical_cores

        s = self.settings
        self.threads = None if s.threads is None else min(s.threads, physical_cores())
        try:
            model = await asyncio.to_thread(self._load)  # reads the file
            pipeline = VisionPipeline(self.kernel.sink, model=model, cameras=s.cameras,
                                      min_confidence=s.min_confidence, on_seen=self._on_seen)
            await pipeline.__aenter__()
        except VisionError as err:  # a bad model file: run on without vision
            self.kernel.metrics.bad_payloads.labels(source="config", reason="vision").inc()
            logger.error("vision not started: %s", err)
            return
        self.pipeline = pipeline

    def _load(self) -> VisionModel:
        """The model a rollout installed, else (counted when it cannot be used) the
        configured one."""
        from edge_agent.inference.installed import InstalledModels
        from edge_agent.inference.vision import VisionError, VisionModel

        installed = InstalledModels(self.kernel.data_dir, registry=self.kernel.registry)
        path = installed.current("vision")
        if path is not None:
            try:
                return VisionModel(path, intra_op_threads=self.threads)
            except VisionError as err:
                installed.fallback("vision", "invalid", str(err))
        return VisionModel(self.settings.model, intra_op_threads=self.threads)

    def model_slot(self, name: str) -> VisionSlot | None:
        """The running model, for the model installer (decision 0042)."""
        from edge_agent.inference.vision.slot import VisionSlot

        if name != "vision" or self.pipeline is None:
            return None
        return VisionSlot(self.pipeline.classifier, threads=self.threads)

    async def stop(self) -> None:
        if self.pipeline is not None:  # feeds the triggers: stopped before in-aisle
            await self.pipeline.__aexit__(None, None, None)
            self.pipeline = None

    async def _on_seen(self, seen: CategorySeen) -> None:
        """A recognised product: from a cart's camera it is that cart's (triggers, the
        unscanned check); a fixed camera's sighting has no cart and is only counted."""
        in_aisle = self.kernel.module("in_aisle")
        if seen.source in self.settings.cameras or not isinstance(in_aisle, InAisleModule):
            return
        await in_aisle.in_aisle.seen.on_seen(seen)


MODULE = Vision
