"""Product-category classification: a synchronous core and an asyncio service around it.

    clf = VisionClassifier(VisionModel(), registry=registry)
    category, confidence = clf.classify(image)          # BGR uint8, any size

    async with AsyncVisionClassifier(clf, clock=clock, queue_size=8) as service:
        CartSnapshots(ctx, sink=service.submit, metrics=clf.metrics).attach()
        async for seen in service.stream():              # CategorySeen messages
            ...

The service keeps a bounded queue of frames. A store box that cannot keep up drops the
*oldest* frames (counted in ``storefleet_vision_frames_dropped_total``): what a shopper
holds now matters more than what they held two seconds ago. The worker takes all queued
frames (up to ``max_batch``) and classifies them as one batch in a thread
(``asyncio.to_thread``: JPEG decoding and onnxruntime are blocking C code that release the
GIL, so the event loop keeps serving the bus meanwhile). Each classification at or above
``min_confidence`` becomes a ``CategorySeen``, delivered to every ``stream()`` subscriber
(each with its own bounded queue, oldest dropped) and to the ``on_seen`` callback.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import NamedTuple

import numpy as np
from prometheus_client import CollectorRegistry

from edge_agent.inference.vision.errors import FrameError, VisionError
from edge_agent.inference.vision.frames import Frame, decode_jpeg
from edge_agent.inference.vision.metrics import VisionMetrics
from edge_agent.inference.vision.model import VisionModel
from protocols.clock import Clock
from protocols.ids import uuid7
from protocols.vision import CategorySeen

logger = logging.getLogger(__name__)

# On the held-out set, answers at >= 0.6 are right 96.7% of the time and cover 80% of
# frames, while answers below 0.5 are right only about half the time (models/vision/
# MODEL_CARD.md); a coupon fired on a guess annoys more than it sells.
DEFAULT_MIN_CONFIDENCE = 0.6


class Classification(NamedTuple):
    category: str
    confidence: float


OnSeen = Callable[[CategorySeen], Awaitable[None] | None]


class VisionClassifier:
    """Synchronous, thread-safe to call from one worker thread at a time.

    ``model`` may be replaced while the worker runs (a model rollout, decision 0042):
    every call reads it once, so a batch is preprocessed, run and labelled by one model.
    """

    def __init__(self, model: VisionModel, *, registry: CollectorRegistry) -> None:
        self.model = model
        self.metrics = VisionMetrics(registry)

    def classify(self, frame: np.ndarray | bytes) -> Classification:
        """One frame (BGR pixels or JPEG bytes). Raises ``FrameError`` for a bad frame,
        after counting it."""
        model = self.model
        try:
            image = decode_jpeg(frame) if isinstance(frame, bytes) else frame
            batch = model.preprocess([image])
        except FrameError as err:
            self.metrics.bad_frames.labels(reason=err.reason).inc()
            raise
        return self._classify_batch(model, batch)[0]

    def classify_batch(self, images: Sequence[np.ndarray]) -> list[Classification]:
        model = self.model
        return self._classify_batch(model, model.preprocess(images))

    def classify_frames(self, frames: Sequence[Frame], *,
                        model: VisionModel | None = None) -> list[Classification | None]:
        """Decode and classify (by ``model``, default the current one); a bad frame yields
        None (counted), the others go on."""
        model = model or self.model
        good: list[np.ndarray] = []
        where: list[int] = []
        for i, frame in enumerate(frames):
            try:
                good.append(model.preprocess([frame.pixels()])[0])
                where.append(i)
            except FrameError as err:
                self.metrics.bad_frames.labels(reason=err.reason).inc()
                logger.warning("vision source %s: %s", frame.source, err)
        out: list[Classification | None] = [None] * len(frames)
        if good:
            for i, c in zip(where, self._classify_batch(model, np.stack(good)), strict=True):
                out[i] = c
        return out

    def probe(self, jpeg: bytes) -> tuple[VisionModel, np.ndarray]:
        """The current model and its probabilities for one JPEG, by the path a snapshot
        takes (decode, crop and resize, run) but not counted as a classification: the
        model installer's check after a swap."""
        model = self.model
        return model, model.predict(model.preprocess([decode_jpeg(jpeg)]))

    def _classify_batch(self, model: VisionModel, batch: np.ndarray) -> list[Classification]:
        probs = model.predict(batch)
        best = probs.argmax(axis=1)
        labels = model.info.labels
        result = [Classification(labels[k], float(probs[i, k])) for i, k in enumerate(best)]
        for c in result:
            self.metrics.classified.labels(category=c.category).inc()
        return result


class AsyncVisionClassifier:
    """Bounded-queue asyncio service over a ``VisionClassifier``."""

    def __init__(
        self,
        classifier: VisionClassifier,
        *,
        clock: Clock,
        queue_size: int = 8,
        max_batch: int = 8,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        on_seen: OnSeen | None = None,
        subscriber_queue: int = 64,
    ) -> None:
        if queue_size < 1 or max_batch < 1:
            raise ValueError("queue_size and max_batch must be >= 1")
        self.classifier = classifier
        self.metrics = classifier.metrics
        self.clock = clock
        self.max_batch = max_batch
        self.min_confidence = min_confidence
        self.on_seen = on_seen
        self.subscriber_queue = subscriber_queue
        self._frames: collections.deque[Frame] = collections.deque(maxlen=queue_size)
        self._wake = asyncio.Event()
        self._subscribers: list[asyncio.Queue[CategorySeen]] = []
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()  # set while no frame is queued or being classified
        self._idle.set()
        self.processed = 0
        self.dropped = 0

    async def __aenter__(self) -> AsyncVisionClassifier:
        self._task = asyncio.create_task(self._worker(), name="vision-classifier")
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def depth(self) -> int:
        return len(self._frames)

    def submit(self, frame: Frame) -> bool:
        """Queue a frame without waiting. Returns False when an older frame was dropped."""
        self.metrics.frames.labels(kind="snapshot" if frame.jpeg is not None else "video").inc()
        dropped = len(self._frames) == self._frames.maxlen
        if dropped:  # deque(maxlen) pushes the oldest out on append
            self.dropped += 1
            self.metrics.dropped.inc()
        self._frames.append(frame)
        self._idle.clear()
        self.metrics.queue_depth.set(len(self._frames))
        self._wake.set()
        return not dropped

    async def stream(self) -> AsyncIterator[CategorySeen]:
        """Every ``CategorySeen`` from now on, until the service stops."""
        queue: asyncio.Queue[CategorySeen] = asyncio.Queue(self.subscriber_queue)
        self._subscribers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.remove(queue)

    async def drain(self) -> None:
        """Wait until every queued frame has been classified (tests, shutdown)."""
        await self._idle.wait()

    async def _worker(self) -> None:
        while True:
            if not self._frames:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._frames.popleft() for _ in range(min(self.max_batch, len(self._frames)))]
            self.metrics.queue_depth.set(len(self._frames))
            model = self.classifier.model  # the batch's results carry this model's tag
            try:
                t0 = time.perf_counter()
                # Decoding and onnxruntime block for milliseconds: run them in a thread.
                results = await asyncio.to_thread(self.classifier.classify_frames, batch,
                                                  model=model)
                self.metrics.batch_seconds.observe(time.perf_counter() - t0)
            except VisionError as err:  # e.g. onnxruntime failed: skip the batch, go on
                self.metrics.errors.labels(where="inference").inc()
                logger.error("vision batch of %d frames failed: %s", len(batch), err)
                continue
            else:
                self.processed += len(batch)
                for frame, result in zip(batch, results, strict=True):
                    if result is not None:
                        await self._publish(frame, result, model=model.info.tag)
            finally:
                if not self._frames:
                    self._idle.set()

    async def _publish(self, frame: Frame, result: Classification, *, model: str) -> None:
        if result.confidence < self.min_confidence:
            self.metrics.low_confidence.inc()
            return
        seen = CategorySeen(
            id=uuid7(self.clock.now_ms()),
            source=frame.source,
            category=result.category,
            confidence=round(result.confidence, 4),
            ts=frame.ts_ms,
            snapshot_id=frame.snapshot_id,
            session_id=frame.session_id,
            model=model,
        )
        for queue in self._subscribers:
            if queue.full():  # a slow subscriber loses its oldest, not everyone's newest
                queue.get_nowait()
                self.metrics.seen_dropped.inc()
            queue.put_nowait(seen)
        if self.on_seen is not None:
            try:
                maybe = self.on_seen(seen)
                if inspect.isawaitable(maybe):
                    await maybe
            except Exception:  # a failing consumer must not stop classification
                self.metrics.errors.labels(where="on_seen").inc()
                logger.exception("on_seen callback failed for %s", seen.id)
