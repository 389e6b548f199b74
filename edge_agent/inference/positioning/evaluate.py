"""Replay a recorded track through the online pipeline and score it against the
ground truth in the same file."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.inference.positioning.filter import FilterParams
from edge_agent.inference.positioning.model import PositionModel
from edge_agent.inference.positioning.pipeline import Positioner, replay_rows
from edge_agent.inference.positioning.survey import Survey

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Score:
    median_m: float
    p90_m: float
    mean_m: float
    n: int

    def to_json(self) -> dict[str, float | int]:
        return {
            "median_m": round(self.median_m, 3),
            "p90_m": round(self.p90_m, 3),
            "mean_m": round(self.mean_m, 3),
            "n": self.n,
        }


def score(estimates: FloatArray, truth: FloatArray) -> Score:
    """Errors over rows that have both an estimate and a ground truth."""
    ok = np.all(np.isfinite(estimates), axis=1) & np.all(np.isfinite(truth), axis=1)
    err = np.hypot(*(estimates[ok] - truth[ok]).T)
    if len(err) == 0:
        return Score(float("nan"), float("nan"), float("nan"), 0)
    return Score(
        float(np.median(err)), float(np.percentile(err, 90)), float(np.mean(err)), len(err)
    )


def replay_track(
    model: PositionModel,
    track: Survey,
    *,
    filter_params: FilterParams | None = None,
    use_radio_map: bool = True,
) -> FloatArray:
    positioner = Positioner(model, filter_params=filter_params, use_radio_map=use_radio_map)
    return replay_rows(positioner, "replay", track.ts, track.rssi, track.anchor_ids)


def evaluate_track(
    model: PositionModel,
    track: Survey,
    *,
    filter_params: FilterParams | None = None,
    use_radio_map: bool = True,
) -> Score:
    est = replay_track(model, track, filter_params=filter_params, use_radio_map=use_radio_map)
    return score(est, track.xy)
