"""Train a store's positioning model from site surveys and export it to ONNX.

    python -m models.positioning.train            # rebuild the committed calib2021 models
    storefleet positioning train --survey a.csv --survey b.csv --anchors anchors.csv --out m.onnx

A small MLP (scikit-learn, fixed seed, CPU, seconds) maps smoothed RSSI to (x, y). The
features are computed by the agent's own ``survey_features`` so training and the store
box see identical inputs. The floor plan and feature parameters go into the ONNX
metadata, so a model file is all the store box needs.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from edge_agent.inference.positioning.features import FeatureParams, survey_features
from edge_agent.inference.positioning.layout import FloorPlan
from edge_agent.inference.positioning.model import METADATA_KEY, ModelInfo
from edge_agent.inference.positioning.pathloss import PathLoss
from edge_agent.inference.positioning.radiomap import METADATA_KEY as RADIOMAP_KEY
from edge_agent.inference.positioning.radiomap import RadioMap, RadioMapParams
from edge_agent.inference.positioning.survey import (
    Survey,
    convert_calib2021,
    read_anchors,
    read_survey,
)
from models.positioning import DEFAULT_MODEL, HOLDOUT_MODEL, dataset_dir

logger = logging.getLogger(__name__)

# Spread of the MLP's error on held-out calib2021 tracks (median ~1.1 m, p90 ~2.5 m): the
# filter's measurement sigma. Smaller made the filter trust single bad fixes; larger lagged.
MEAS_SIGMA_M = 1.5
# two hidden layers of 64: 6 inputs need little; (128, 128) fit the survey no better on
# held-out tracks. alpha=0.01 regularises against the survey's neighbouring near-duplicates.
HIDDEN = (64, 64)
ALPHA = 1e-2
# height of the tag for the radio map's path-loss prior: calib2021's robot carries it at
# 1.3 m, a cart handle is about 1 m; the difference only matters within ~2 m of an anchor
TAG_HEIGHT_M = 1.3


def bounding_plan(
    surveys: list[Survey], anchors: dict[str, tuple[float, float, float]]
) -> FloorPlan:
    """Without a floor plan: the box around the survey and the anchors, 0.5 m margin."""
    pts = np.vstack([s.xy for s in surveys] + [np.array([a[:2] for a in anchors.values()])])
    x0, y0 = np.nanmin(pts, axis=0) - 0.5
    x1, y1 = np.nanmax(pts, axis=0) + 0.5
    return FloorPlan.rectangle(float(x0), float(y0), float(x1), float(y1))


def train_model(
    surveys: list[Survey],
    *,
    anchors: dict[str, tuple[float, float, float]],
    floorplan: FloorPlan | None = None,
    features: FeatureParams | None = None,
    names: tuple[str, ...] = (),
    seed: int = 0,
    max_iter: int = 800,
    radio_map: RadioMapParams | None = None,
) -> bytes:
    """Fit on ``surveys`` (each one recording, rows in time order); returns ONNX bytes
    holding the MLP (the point fix: seeds the filter) and, in its metadata, the radio
    map (the likelihood the filter weighs particles by), built around a multi-wall
    path-loss model of each anchor fitted to the same survey."""
    params = features or FeatureParams()
    anchor_ids = tuple(sorted(anchors, key=lambda a: (len(a), a)))
    x = np.vstack(
        [survey_features(s.ts, s.columns(anchor_ids), params=params) for s in surveys]
    ).astype(np.float32)
    y = np.vstack([s.xy for s in surveys])
    keep = np.all(np.isfinite(y), axis=1)
    pipe = make_pipeline(
        StandardScaler(),
        MLPRegressor(hidden_layer_sizes=HIDDEN, alpha=ALPHA, max_iter=max_iter, random_state=seed),
    )
    with warnings.catch_warnings(record=True) as caught:
        # an iteration cap that stops adam early is a choice (smoke tests), not an error
        warnings.simplefilter("always", ConvergenceWarning)
        pipe.fit(x[keep], y[keep])
    for w in caught:
        logger.info("training: %s", w.message)
    onx = convert_sklearn(
        pipe,
        initial_types=[("rssi", FloatTensorType([None, len(anchor_ids)]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    plan = floorplan or bounding_plan(surveys, anchors)
    feats = x[keep].astype(np.float64)
    prior = PathLoss.fit(
        y[keep],
        feats,
        anchors=np.array([anchors[a] for a in anchor_ids]),
        plan=plan,
        floor_dbm=params.floor_dbm,
        tag_height_m=TAG_HEIGHT_M,
    )
    rmap = RadioMap.fit(y[keep], feats, bounds=plan.bounds, params=radio_map, prior=prior)
    info = ModelInfo(
        anchor_ids=anchor_ids,
        features=params,
        floorplan=plan,
        meas_sigma_m=MEAS_SIGMA_M,
        trained_on=names,
    )
    entry = onnx.StringStringEntryProto(key=METADATA_KEY, value=info.to_json())
    onx.metadata_props.append(entry)
    onx.metadata_props.append(onnx.StringStringEntryProto(key=RADIOMAP_KEY, value=rmap.to_json()))
    onx.doc_string = "storefleet indoor positioning: smoothed RSSI -> (x, y) metres"
    # skl2onnx names the graph with a random uuid; a fixed name keeps rebuilds byte-identical
    onx.graph.name = "storefleet_positioning"
    return bytes(onx.SerializeToString())


def train_files(
    survey_paths: list[Path],
    *,
    anchors_path: Path,
    layout_path: Path | None,
    zones_path: Path | None,
    max_iter: int = 800,
) -> bytes:
    surveys = [read_survey(p) for p in survey_paths]
    plan = FloorPlan.load(layout_path, zones=zones_path) if layout_path else None
    return train_model(
        surveys,
        anchors=read_anchors(anchors_path),
        floorplan=plan,
        names=tuple(p.name for p in survey_paths),
        max_iter=max_iter,
    )


def rebuild_committed(src: Path) -> None:
    """Rebuild both committed models from the calib2021 dataset (the shipped copy by default)."""
    with tempfile.TemporaryDirectory(prefix="sf-calib2021-") as tmp:
        out = Path(tmp)
        convert_calib2021(src, out)
        tracks = [out / f"calib{i}.csv" for i in range(1, 5)]
        for dest, use in ((DEFAULT_MODEL, tracks), (HOLDOUT_MODEL, tracks[:3])):
            data = train_files(
                use,
                anchors_path=out / "anchors.csv",
                layout_path=out / "layout.csv",
                zones_path=None,
            )
            dest.write_bytes(data)
            logger.info("wrote %s (%d bytes) from %s", dest, len(data), [p.name for p in use])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=dataset_dir())
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rebuild_committed(args.dataset)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
