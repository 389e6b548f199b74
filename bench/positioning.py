"""Indoor positioning benchmark: model latency per update and accuracy on the shared
calib2021 dataset, with the plain kNN baseline measured in the same run.

    python -m bench.positioning --json              # committed held-out model, track 4
    python -m bench.positioning --json --retrain    # + leave-one-track-out, retrained (minutes)

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.inference.positioning.evaluate import evaluate_track, score
from edge_agent.inference.positioning.model import PositionModel
from edge_agent.inference.positioning.pipeline import Positioner, ScanReport
from edge_agent.inference.positioning.survey import Survey, convert_calib2021, read_survey
from models.positioning import HOLDOUT_MODEL, dataset_dir
from models.positioning.baseline import KnnBaseline


def _pct(samples: list[float], q: float) -> float:
    return round(float(np.percentile(samples, q)) * 1e6, 1)


def latency(model: PositionModel, track: Survey, *, n: int = 2000) -> dict[str, float]:
    """Per-update time of the model alone and of the whole ``Positioner.observe``."""
    rows = [track.rssi[i % len(track)] for i in range(n)]
    feats = np.nan_to_num(track.columns(model.anchor_ids), nan=-100.0)
    model_t: list[float] = []
    for i in range(n):
        x = feats[i % len(feats)][None]
        t0 = time.perf_counter()
        model.predict(x)
        model_t.append(time.perf_counter() - t0)
    pos = Positioner(model)
    obs_t: list[float] = []
    for i, row in enumerate(rows):
        t = i / 3.0
        reports = [
            ScanReport(track.anchor_ids[j], float(row[j]), t)
            for j in np.flatnonzero(~np.isnan(row))
        ]
        t0 = time.perf_counter()
        pos.observe("bench", reports, t=t)
        obs_t.append(time.perf_counter() - t0)
    return {
        "model_p50_us": _pct(model_t, 50),
        "model_p99_us": _pct(model_t, 99),
        "update_p50_us": _pct(obs_t, 50),
        "update_p99_us": _pct(obs_t, 99),
    }


def fold(model: PositionModel, train: list[Survey], test: Survey) -> dict[str, Any]:
    ours = evaluate_track(model, test)
    knn = score(KnnBaseline(train, anchor_ids=model.anchor_ids).predict(test), test.xy)
    return {
        "ours": ours.to_json(),
        "knn": knn.to_json(),
        "median_ratio": round(ours.median_m / knn.median_m, 3),
        "p90_ratio": round(ours.p90_m / knn.p90_m, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="storefleet positioning benchmark")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--retrain", action="store_true", help="also leave-one-track-out, retrained")
    ap.add_argument("--dataset", type=Path, default=dataset_dir())
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sf-bench-pos-") as tmp:
        out = Path(tmp)
        convert_calib2021(args.dataset, out)
        tracks = [read_survey(out / f"calib{i}.csv") for i in range(1, 5)]
        model = PositionModel(HOLDOUT_MODEL)
        result: dict[str, Any] = {"bench": "positioning", "dataset": "ble-rss-calib2021"}
        result["latency"] = latency(model, tracks[3])
        result["holdout_track4"] = fold(model, tracks[:3], tracks[3])
        if args.retrain:
            from models.positioning.train import train_files

            loto = {}
            for k in range(4):
                use = [out / f"calib{i}.csv" for i in range(1, 5) if i != k + 1]
                m = PositionModel(
                    train_files(
                        use,
                        anchors_path=out / "anchors.csv",
                        layout_path=out / "layout.csv",
                        zones_path=None,
                    )
                )
                loto[f"track{k + 1}"] = fold(
                    m, [t for i, t in enumerate(tracks) if i != k], tracks[k]
                )
                if not args.json:
                    print(f"track{k + 1}: {loto[f'track{k + 1}']}", flush=True)
            result["leave_one_track_out"] = loto
    if not args.json:
        print(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
