"""The fingerprint model: an ONNX regressor from smoothed RSSI to (x, y), run in
onnxruntime. Everything the online pipeline needs besides the weights (anchor order,
feature parameters, floor plan, measurement spread) travels in the model's metadata.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from edge_agent.inference.positioning.errors import ModelError
from edge_agent.inference.positioning.features import FeatureParams
from edge_agent.inference.positioning.layout import FloorPlan
from edge_agent.inference.positioning.radiomap import METADATA_KEY as RADIOMAP_KEY
from edge_agent.inference.positioning.radiomap import RadioMap

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
METADATA_KEY = "storefleet.positioning"


@dataclass(frozen=True)
class ModelInfo:
    anchor_ids: tuple[str, ...]
    features: FeatureParams
    floorplan: FloorPlan
    # spread of the model's error on held-out data, used as the filter's measurement sigma
    meas_sigma_m: float
    trained_on: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "anchor_ids": list(self.anchor_ids),
                "features": {
                    "tau_s": self.features.tau_s,
                    "expiry_s": self.features.expiry_s,
                    "floor_dbm": self.features.floor_dbm,
                },
                "floorplan": self.floorplan.to_json(),
                "meas_sigma_m": self.meas_sigma_m,
                "trained_on": list(self.trained_on),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        d: dict[str, Any] = json.loads(text)
        return cls(
            anchor_ids=tuple(str(a) for a in d["anchor_ids"]),
            features=FeatureParams(**{k: float(v) for k, v in d["features"].items()}),
            floorplan=FloorPlan.from_json(d["floorplan"]),
            meas_sigma_m=float(d["meas_sigma_m"]),
            trained_on=tuple(d.get("trained_on", [])),
        )


class PositionModel:
    """One onnxruntime session; ``predict`` maps N x anchors features to N x 2 metres."""

    def __init__(self, source: Path | bytes, *, intra_op_threads: int = 1) -> None:
        name = str(source) if isinstance(source, Path) else "<bytes>"
        opts = ort.SessionOptions()
        # The store box has 2 cores shared with everything else; more intra-op threads than
        # physical cores doubled latency in our measurements, and one small MLP gains nothing
        # from a second inter-op thread.
        opts.intra_op_num_threads = max(1, min(intra_op_threads, 2))
        opts.inter_op_num_threads = 1
        try:
            data = source.read_bytes() if isinstance(source, Path) else source
            self._session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
            meta = self._session.get_modelmeta().custom_metadata_map
        except Exception as err:  # onnxruntime raises several unexported error types
            raise ModelError(name, f"cannot load: {err}") from err
        if METADATA_KEY not in meta:
            raise ModelError(name, f"no {METADATA_KEY!r} metadata (not trained by storefleet?)")
        try:
            self.info = ModelInfo.from_json(meta[METADATA_KEY])
        except (KeyError, ValueError, TypeError) as err:
            raise ModelError(name, f"bad metadata: {err}") from err
        # models from before round 2 have no radio map: the filter then weighs particles
        # by the point fix alone
        self.radio_map: RadioMap | None = None
        if RADIOMAP_KEY in meta:
            try:
                self.radio_map = RadioMap.from_json(meta[RADIOMAP_KEY])
            except (KeyError, ValueError, TypeError, IndexError) as err:
                raise ModelError(name, f"bad radio map: {err}") from err
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        self._output = self._session.get_outputs()[0].name
        self.name = name

    @property
    def anchor_ids(self) -> tuple[str, ...]:
        return self.info.anchor_ids

    def check(self) -> None:
        """What the positioner relies on, before this model may replace a running one
        (decision 0042): one float input ``(batch, anchors)`` with a free batch axis,
        one float output, and a finite (x, y) per row for two rows of "nothing heard".
        The output's declared shape is not checked: skl2onnx declares ``(None, 1)`` for a
        two-target regressor, so the answer's size is. Raises ``ModelError``."""
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)":
            raise ModelError(self.name, "needs one float input, has "
                             f"{[(i.name, i.type) for i in inputs]}")
        shape = inputs[0].shape
        anchors = len(self.anchor_ids)
        if (len(shape) != 2 or isinstance(shape[0], int)
                or (isinstance(shape[1], int) and shape[1] != anchors)):
            raise ModelError(self.name, f"input {inputs[0].name} {shape} is not "
                             f"(batch, {anchors} anchors)")
        if len(outputs) != 1 or outputs[0].type != "tensor(float)":
            raise ModelError(self.name, "needs one float output, has "
                             f"{[(o.name, o.type) for o in outputs]}")
        quiet = np.full((2, anchors), self.info.features.floor_dbm, np.float32)
        try:
            (y,) = self._session.run([self._output], {self._input: quiet})
        except Exception as err:  # onnxruntime raises several unexported error types
            raise ModelError(self.name, f"inference failed: {err}") from err
        check_fixes(self.name, np.asarray(y), rows=2)

    def predict(self, features: FloatArray) -> FloatArray:
        x = np.ascontiguousarray(features, dtype=np.float32).reshape(-1, len(self.anchor_ids))
        (y,) = self._session.run([self._output], {self._input: x})
        return np.asarray(y, dtype=np.float64).reshape(-1, 2)


def check_fixes(where: str, fixes: npt.NDArray[Any], *, rows: int) -> None:
    """``fixes`` holds one finite (x, y) per row, or ``ModelError``."""
    if fixes.size != 2 * rows:
        raise ModelError(where, f"answered {fixes.shape} for {rows} rows, not ({rows}, 2)")
    if not np.isfinite(fixes).all():
        raise ModelError(where, "answered NaN or infinite positions")
