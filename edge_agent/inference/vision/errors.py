"""Errors raised by the vision runtime.

    VisionError                  base of everything raised here (an ``AgentError``)
     +-- FrameError              a frame that cannot be used (``reason``: empty,
     |                           not_jpeg, too_large, truncated, bad_jpeg, bad_shape)
     +-- ModelError              the ONNX model cannot be loaded or is not ours (``path``)
     +-- SourceError             a capture source cannot be opened or stopped delivering
                                 (``source``)

``FrameError.reason`` is a short, stable code used as a metric label. OpenCV's
``cv2.error`` and onnxruntime's exceptions are converted to these where they enter.
"""

from __future__ import annotations

from edge_agent.errors import AgentError


class VisionError(AgentError):
    """Base error of the vision runtime."""


class FrameError(VisionError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"bad frame ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class ModelError(VisionError):
    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"vision model {path}: {detail}")
        self.path = path
        self.detail = detail


class SourceError(VisionError):
    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"video source {source}: {detail}")
        self.source = source
        self.detail = detail
