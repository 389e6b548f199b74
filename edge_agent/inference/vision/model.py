"""The product-category model: an ONNX graph run by onnxruntime on the store box's CPU.

The graph takes a batch of uint8 BGR frames, ``(N, S, S, 3)``, already cropped and
resized to ``S`` (its ``input_size``); scaling to float and normalising happen inside the
graph, so the box does no float work of its own and the training script cannot
disagree with the runtime about normalisation. It returns class probabilities ``(N, C)``.
Its labels, input size, name and version ride in the ONNX metadata.

    model = VisionModel()                       # the shipped models/vision model
    probs = model.predict(preprocess(frames, size=model.info.input_size))

Threads: ``intra_op_num_threads`` = min(physical cores, 2) - hyper-threads and more
threads than cores doubled the latency on a loaded 2-core box - and
``inter_op_num_threads`` = 1 (the graph is a chain; there is nothing to run in parallel).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from edge_agent.inference.vision.errors import FrameError, ModelError
from protocols.vision import PRODUCT_CATEGORIES

logger = logging.getLogger(__name__)

MODEL_FILE = "product_cnn.onnx"
# Beyond two threads the per-frame latency got worse on the 2-core store box (ENVIRONMENT).
MAX_THREADS = 2
# What onnxruntime raises for a file that is not a usable model (they derive from
# Exception directly, with no common base of their own).
_ORT_ERRORS: tuple[type[Exception], ...] = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)


def default_model_path() -> Path:
    """The model shipped as package data of ``models.vision``."""
    return Path(str(resources.files("models.vision").joinpath(MODEL_FILE)))


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once).

    Read from sysfs so that no extra dependency is needed; falls back to the number of
    CPUs in the affinity mask where the topology is not exposed (containers, non-Linux).
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topo / "physical_package_id").read_text().strip()
            core = (topo / "core_id").read_text().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores))


def session_threads() -> int:
    return min(physical_cores(), MAX_THREADS)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    version: str
    labels: tuple[str, ...]
    input_size: int
    sha256: str

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"


def preprocess(frames: Sequence[np.ndarray], *, size: int) -> np.ndarray:
    """Centre-crop each BGR frame to a square and resize it to ``size``: ``(N,S,S,3)`` uint8.

    The centre crop keeps the aspect ratio of what the camera saw (a cart camera looks
    down into the basket, the product is near the centre); squashing a 16:9 frame would
    make every can look like a bread loaf. INTER_AREA is the right filter for shrinking
    and is what the model was trained with. Grey and BGRA frames are converted.
    """
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, frame in enumerate(frames):
        img = _as_bgr(frame)
        h, w = img.shape[:2]
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        crop = img[y0 : y0 + side, x0 : x0 + side]
        if side == size:
            out[i] = crop
        else:
            interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
            cv2.resize(crop, (size, size), dst=out[i], interpolation=interp)
    return out


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.size == 0:
        raise FrameError("bad_shape", "a frame must be a non-empty uint8 array")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3 and frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    raise FrameError("bad_shape", f"unsupported frame shape {frame.shape}")


class VisionModel:
    """One onnxruntime session over the product-category graph."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        intra_op_threads: int | None = None,
        optimize: bool = True,
    ) -> None:
        self.path = Path(path) if path is not None else default_model_path()
        threads = session_threads() if intra_op_threads is None else intra_op_threads
        if threads < 1:
            raise ModelError(str(self.path), f"intra_op_threads must be >= 1, got {threads}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if not optimize:  # the benchmark's baseline: the graph as exported
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.session_options = opts
        try:
            data = self.path.read_bytes()
            self.session = ort.InferenceSession(
                data, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except (OSError, *_ORT_ERRORS) as err:  # type: ignore[misc]  # mypy: starred tuple
            raise ModelError(str(self.path), str(err)) from err
        self.info = self._read_info(hashlib.sha256(data).hexdigest())
        self.threads = threads
        self._input = self.session.get_inputs()[0].name
        logger.info("vision model %s loaded (%s, %d thread(s))", self.info.tag, self.path, threads)

    def _read_info(self, sha256: str) -> ModelInfo:
        meta = self.session.get_modelmeta().custom_metadata_map
        where = str(self.path)
        try:
            labels = tuple(json.loads(meta["labels"]))
            size = int(meta["input_size"])
        except (KeyError, ValueError, TypeError) as err:
            raise ModelError(where, f"metadata needs labels and input_size ({err})") from err
        unknown = set(labels) - set(PRODUCT_CATEGORIES)
        if not labels or unknown:
            raise ModelError(where, f"labels not in PRODUCT_CATEGORIES: {sorted(unknown)}")
        shape = self.session.get_inputs()[0].shape
        if list(shape[1:]) != [size, size, 3]:
            raise ModelError(where, f"input shape {shape} does not match input_size {size}")
        return ModelInfo(
            name=meta.get("name", self.path.stem),
            version=meta.get("version", sha256[:12]),
            labels=labels,
            input_size=size,
            sha256=sha256,
        )

    def preprocess(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        return preprocess(frames, size=self.info.input_size)

    def check(self) -> None:
        """What the classifier relies on, before this model may replace a running one
        (decision 0042): one uint8 input ``(batch, S, S, 3)`` with a free batch axis (the
        classifier batches up to eight frames), one float output ``(batch, labels)``, and
        probabilities for a batch of two black frames. Raises ``ModelError``."""
        where = str(self.path)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(uint8)":
            raise ModelError(where, "needs one uint8 input, has "
                             f"{[(i.name, i.type) for i in inputs]}")
        if isinstance(inputs[0].shape[0], int):
            raise ModelError(where, f"input {inputs[0].name} has a fixed batch of "
                             f"{inputs[0].shape[0]}; the classifier batches frames")
        if len(outputs) != 1 or outputs[0].type != "tensor(float)":
            raise ModelError(where, "needs one float output, has "
                             f"{[(o.name, o.type) for o in outputs]}")
        shape = outputs[0].shape
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != len(self.info.labels)):
            raise ModelError(where, f"output {outputs[0].name} {shape} is not "
                             f"(batch, {len(self.info.labels)} labels)")
        size = self.info.input_size
        check_probabilities(where, self.predict(np.zeros((2, size, size, 3), np.uint8)),
                            rows=2, labels=len(self.info.labels))


    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, C)`` for a preprocessed uint8 batch ``(N, S, S, 3)``."""
        if len(batch) == 0:
            return np.zeros((0, len(self.info.labels)), np.float32)
        try:
            (probs,) = self.session.run(None, {self._input: batch})
        except _ORT_ERRORS as err:
            raise ModelError(str(self.path), f"inference failed: {err}") from err
        return np.asarray(probs, dtype=np.float32)


# A softmax in float32 sums to 1 within a few ulps per label; 1e-3 leaves room for any
# export while still catching logits or scores that were never normalised.
_SUM_TOLERANCE = 1e-3


def check_probabilities(where: str, probs: np.ndarray, *, rows: int, labels: int) -> None:
    """``probs`` is ``rows`` finite probability rows over ``labels``, or ``ModelError``."""
    if probs.shape != (rows, labels):
        raise ModelError(where, f"answered {probs.shape} for {rows} frames, not "
                         f"({rows}, {labels})")
    if not np.isfinite(probs).all():
        raise ModelError(where, "answered NaN or infinite scores")
    if probs.min() < 0 or probs.max() > 1 or np.abs(probs.sum(axis=1) - 1).max() > _SUM_TOLERANCE:
        raise ModelError(where, "answered scores that are not probabilities")
