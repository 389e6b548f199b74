"""Errors of the positioning pipeline.

    PositioningError           base of everything raised here
     +-- SurveyError           a survey / track / anchors / layout file is unreadable (``path``)
     +-- ModelError            the ONNX model is missing, corrupt or lacks its metadata (``path``)

onnxruntime's and the csv module's errors are converted to these where they enter our code.
"""

from __future__ import annotations

from protocols.errors import StorefleetError


class PositioningError(StorefleetError):
    """Base error of indoor positioning."""

    reason = "positioning_error"


class SurveyError(PositioningError):
    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


class ModelError(PositioningError):
    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"positioning model {path}: {detail}")
        self.path = path
        self.detail = detail
