"""The whole vision path of one store box in one object, for the composition root.

    async with VisionPipeline(ctx, cameras={"cam-entrance": "rtsp://10.0.0.7/stream"},
                              on_seen=triggers.handle_seen) as vision:
        ...                                   # or: async for seen in vision.stream()

It loads the model, subscribes to cart snapshots on the local bus (``CartSnapshots``),
runs one supervised task per camera (``VideoSource``; reopened with jittered backoff
when a camera or stream fails, each failure counted in
``storefleet_vision_errors_total{where="source"}``; a video *file* simply ends) and feeds
everything into one bounded ``AsyncVisionClassifier``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

from edge_agent.drivers.base import DriverContext
from edge_agent.inference.vision.classifier import (
    DEFAULT_MIN_CONFIDENCE,
    AsyncVisionClassifier,
    OnSeen,
    VisionClassifier,
)
from edge_agent.inference.vision.errors import SourceError
from edge_agent.inference.vision.frames import CartSnapshots, VideoSource
from edge_agent.inference.vision.model import VisionModel
from protocols.backoff import Backoff
from protocols.vision import CategorySeen

logger = logging.getLogger(__name__)


class VisionPipeline:
    def __init__(
        self,
        ctx: DriverContext,
        *,
        model: VisionModel | None = None,
        cameras: Mapping[str, str | int] | None = None,
        every_n: int = 5,  # a 25-30 fps camera: 5-6 looks a second are plenty for a hand
        carts: bool = True,
        queue_size: int = 8,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        on_seen: OnSeen | None = None,
        restart_min_s: float = 1.0,
        restart_max_s: float = 60.0,
    ) -> None:
        self.ctx = ctx
        self.classifier = VisionClassifier(model or VisionModel(), registry=ctx.registry)
        self.service = AsyncVisionClassifier(
            self.classifier,
            clock=ctx.clock,
            queue_size=queue_size,
            min_confidence=min_confidence,
            on_seen=on_seen,
        )
        self.cameras = dict(cameras or {})
        self.every_n = every_n
        self.carts = carts
        self.restart_min_s = restart_min_s
        self.restart_max_s = restart_max_s
        self.snapshots: CartSnapshots | None = None
        self.restarts: dict[str, int] = dict.fromkeys(self.cameras, 0)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> VisionPipeline:
        await self.service.__aenter__()
        if self.carts:
            self.snapshots = CartSnapshots(
                self.ctx, sink=self.service.submit, metrics=self.classifier.metrics
            )
            self.snapshots.attach()
        for camera_id, uri in self.cameras.items():
            task = asyncio.create_task(self._camera(camera_id, uri), name=f"vision-{camera_id}")
            self._tasks.append(task)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.service.__aexit__(*exc)

    def stream(self) -> AsyncIterator[CategorySeen]:
        return self.service.stream()

    async def drain(self) -> None:
        await self.service.drain()

    async def _camera(self, camera_id: str, uri: str | int) -> None:
        backoff = Backoff(min_s=self.restart_min_s, max_s=self.restart_max_s)
        while True:
            source = VideoSource(
                uri, source_id=camera_id, clock=self.ctx.clock, every_n=self.every_n
            )
            try:
                async with source:
                    async for frame in source.frames():
                        self.service.submit(frame)
                        backoff.reset()
                if source.is_file:
                    logger.info("vision source %s: end of file", camera_id)
                    return
            except SourceError as err:
                self.classifier.metrics.errors.labels(where="source").inc()
                logger.warning("%s; reopening", err)
            self.restarts[camera_id] += 1
            await asyncio.sleep(backoff.next())
