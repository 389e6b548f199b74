"""The vision module's model as the model installer replaces it (decision 0042).

The candidate must load as a ``VisionModel`` (labels and input size in its metadata)
and pass ``VisionModel.check``; after the swap, ``PROBE`` - a fixed, textured picture
rather than the black frames of the smoke test, so a graph that only breaks on real
pixels is caught - goes through the classifier's own path (JPEG decode, crop and
resize, the model now in place) and must come out as probabilities over its labels.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np

from edge_agent.inference.installed import ModelRejected
from edge_agent.inference.vision.classifier import VisionClassifier
from edge_agent.inference.vision.errors import VisionError
from edge_agent.inference.vision.model import VisionModel, check_probabilities


@cache
def probe_jpeg() -> bytes:
    """A 160x120 picture: colour gradients under seeded noise (the same on every box)."""
    rng = np.random.default_rng(42)
    y, x = np.mgrid[0:120, 0:160]
    image = np.stack([x * 255 // 159, y * 255 // 119, (x + y) * 255 // 278], axis=-1)
    image = np.clip(image + rng.integers(-40, 40, image.shape), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok  # a plain uint8 BGR array always encodes
    return bytes(data)


class VisionSlot:
    name = "vision"

    def __init__(self, classifier: VisionClassifier, *, threads: int | None) -> None:
        self.classifier = classifier
        self.threads = threads

    def load(self, path: Path) -> VisionModel:
        try:
            model = VisionModel(path, intra_op_threads=self.threads)
            model.check()
        except VisionError as err:
            raise ModelRejected(self.name, str(err)) from err
        return model

    def swap(self, model: VisionModel) -> VisionModel:
        previous, self.classifier.model = self.classifier.model, model
        return previous

    def probe(self) -> None:
        try:
            model, probs = self.classifier.probe(probe_jpeg())
            check_probabilities(str(model.path), probs, rows=1, labels=len(model.info.labels))
        except VisionError as err:
            raise ModelRejected(self.name, f"after the swap: {err}") from err
