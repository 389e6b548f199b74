"""Vision on the store box: which product category a shopper holds or puts in the cart.

    model.py       ``VisionModel``: onnxruntime session over the shipped ONNX model
    frames.py      ``Frame``, ``decode_jpeg``, ``VideoSource`` (cv2.VideoCapture),
                   ``CartSnapshots`` (``store/cart/+/up/snapshot`` on the local bus)
    classifier.py  ``VisionClassifier.classify(frame) -> (category, confidence)`` and
                   ``AsyncVisionClassifier`` (bounded queue, ``stream()`` of CategorySeen)
    pipeline.py    ``VisionPipeline``: model + cart snapshots + supervised cameras, for
                   the composition root (``on_seen=`` or ``stream()``)
    metrics.py     ``storefleet_vision_*`` counters on the given registry
    errors.py      ``VisionError`` and its subclasses

The model is trained by ``python -m models.vision.train``; see models/vision/MODEL_CARD.md.
"""

from edge_agent.inference.vision.classifier import (
    DEFAULT_MIN_CONFIDENCE,
    AsyncVisionClassifier,
    Classification,
    VisionClassifier,
)
from edge_agent.inference.vision.errors import FrameError, ModelError, SourceError, VisionError
from edge_agent.inference.vision.frames import CartSnapshots, Frame, VideoSource, decode_jpeg
from edge_agent.inference.vision.metrics import VisionMetrics
from edge_agent.inference.vision.model import ModelInfo, VisionModel, preprocess, session_threads
from edge_agent.inference.vision.pipeline import VisionPipeline

__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "AsyncVisionClassifier",
    "CartSnapshots",
    "Classification",
    "Frame",
    "FrameError",
    "ModelError",
    "ModelInfo",
    "SourceError",
    "VideoSource",
    "VisionClassifier",
    "VisionError",
    "VisionMetrics",
    "VisionModel",
    "VisionPipeline",
    "decode_jpeg",
    "preprocess",
    "session_threads",
]
