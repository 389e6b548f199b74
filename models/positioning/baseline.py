"""The plain k-nearest-neighbours fingerprint baseline: raw RSSI of each scan window
(unheard = -100 dBm), no smoothing, no filter. Measured beside our pipeline so the
comparison is on the same data in the same run."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.neighbors import KNeighborsRegressor

from edge_agent.inference.positioning.survey import Survey

FloatArray = npt.NDArray[np.float64]
FLOOR_DBM = -100.0


class KnnBaseline:
    def __init__(self, surveys: list[Survey], *, anchor_ids: tuple[str, ...], k: int = 5) -> None:
        self.anchor_ids = anchor_ids
        x = np.vstack([np.nan_to_num(s.columns(anchor_ids), nan=FLOOR_DBM) for s in surveys])
        y = np.vstack([s.xy for s in surveys])
        self._knn = KNeighborsRegressor(n_neighbors=k).fit(x, y)

    def predict(self, track: Survey) -> FloatArray:
        x = np.nan_to_num(track.columns(self.anchor_ids), nan=FLOOR_DBM)
        out: FloatArray = self._knn.predict(x)
        return out
