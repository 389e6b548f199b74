"""Indoor positioning benchmark: per-update latency, many-cart throughput, and accuracy on
the calib2021 dataset (shipped in ``models/positioning/data``) with the plain kNN
baseline measured in the same run.

    python -m bench.positioning --json              # committed held-out model, track 4
    python -m bench.positioning --json --retrain    # + leave-one-track-out, all 4 folds

Per fold: the online pipeline (radio-map likelihood + particle filter, what ``storefleet
positioning eval`` replays), the same filter fed only the MLP's point fix (round 1's
pipeline), the MLP fix alone, and plain kNN on raw rows. The last line is one JSON object.
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
from edge_agent.inference.positioning.features import survey_features
from edge_agent.inference.positioning.model import PositionModel
from edge_agent.inference.positioning.pipeline import Positioner, ScanReport
from edge_agent.inference.positioning.survey import Survey, convert_calib2021, read_survey
from models.positioning import HOLDOUT_MODEL, dataset_dir
from models.positioning.baseline import KnnBaseline

# the load: 300 carts scanning at 5 Hz
CARTS = 300
SCAN_HZ = 5.0


def _pct(samples: list[float], q: float) -> float:
    return round(float(np.percentile(samples, q)) * 1e6, 1)


def _windows(track: Survey) -> list[list[ScanReport]]:
    """One scan window per row; times are set by the caller."""
    return [
        [
            ScanReport(track.anchor_ids[j], float(row[j]), 0.0)
            for j in np.flatnonzero(~np.isnan(row))
        ]
        for row in track.rssi
    ]


def latency(model: PositionModel, track: Survey, *, n: int = 2000) -> dict[str, float]:
    """Per-update time of the model alone and of the whole ``Positioner.observe``, one
    cart at ``SCAN_HZ``."""
    feats = np.nan_to_num(track.columns(model.anchor_ids), nan=-100.0)
    model_t: list[float] = []
    for i in range(n):
        x = feats[i % len(feats)][None]
        t0 = time.perf_counter()
        model.predict(x)
        model_t.append(time.perf_counter() - t0)
    windows = _windows(track)
    pos = Positioner(model)
    obs_t: list[float] = []
    for i in range(n):
        t = i / SCAN_HZ
        reports = [ScanReport(r.beacon_id, r.rssi, t) for r in windows[i % len(windows)]]
        t0 = time.perf_counter()
        pos.observe("bench", reports, t=t)
        obs_t.append(time.perf_counter() - t0)
    return {
        "scan_hz": SCAN_HZ,
        "model_p50_us": _pct(model_t, 50),
        "model_p99_us": _pct(model_t, 99),
        "update_p50_us": _pct(obs_t, 50),
        "update_p99_us": _pct(obs_t, 99),
    }


def throughput(model: PositionModel, track: Survey, *, seconds: float = 4.0) -> dict[str, float]:
    """``CARTS`` carts at ``SCAN_HZ`` through one ``Positioner`` on one thread: the
    updates per second it sustains, against the 1,500/s the load needs."""
    windows = _windows(track)
    pos = Positioner(model)
    steps = int(seconds * SCAN_HZ)
    n = 0
    t0 = time.perf_counter()
    for k in range(steps):
        t = k / SCAN_HZ
        for c in range(CARTS):
            # each cart replays the track from its own offset, so the carts disagree
            w = windows[(k + 37 * c) % len(windows)]
            pos.observe(f"cart-{c}", [ScanReport(r.beacon_id, r.rssi, t) for r in w], t=t)
            n += 1
    wall = time.perf_counter() - t0
    return {
        "carts": CARTS,
        "scan_hz": SCAN_HZ,
        "updates_per_s": round(n / wall, 1),
        "needed_per_s": CARTS * SCAN_HZ,
        "mean_update_us": round(wall / n * 1e6, 1),
    }


def fold(model: PositionModel, train: list[Survey], test: Survey) -> dict[str, Any]:
    ours = evaluate_track(model, test)
    fix_filter = evaluate_track(model, test, use_radio_map=False)
    feats = survey_features(test.ts, test.columns(model.anchor_ids), params=model.info.features)
    fix_only = score(model.predict(feats), test.xy)
    knn = score(KnnBaseline(train, anchor_ids=model.anchor_ids).predict(test), test.xy)
    return {
        "rows": len(test),
        "ours": ours.to_json(),
        "fix_filter": fix_filter.to_json(),
        "fix_only": fix_only.to_json(),
        "knn": knn.to_json(),
        "median_ratio": round(ours.median_m / knn.median_m, 3),
        "p90_ratio": round(ours.p90_m / knn.p90_m, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="storefleet positioning benchmark")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--retrain", action="store_true", help="also leave-one-track-out, retrained")
    ap.add_argument("--no-throughput", action="store_true", help="skip the 300-cart run")
    ap.add_argument("--dataset", type=Path, default=dataset_dir())
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sf-bench-pos-") as tmp:
        out = Path(tmp)
        convert_calib2021(args.dataset, out)
        tracks = [read_survey(out / f"calib{i}.csv") for i in range(1, 5)]
        model = PositionModel(HOLDOUT_MODEL)
        result: dict[str, Any] = {"bench": "positioning", "dataset": "ble-rss-calib2021"}
        result["latency"] = latency(model, tracks[3])
        if not args.no_throughput:
            result["throughput"] = throughput(model, tracks[3])
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
