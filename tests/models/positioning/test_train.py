from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from edge_agent.inference.positioning.cli import app
from edge_agent.inference.positioning.evaluate import evaluate_track
from edge_agent.inference.positioning.model import PositionModel
from edge_agent.inference.positioning.survey import read_survey
from firmware_sim import rf
from models.positioning import HOLDOUT_MODEL
from models.positioning.baseline import KnnBaseline

ANCHORS = {
    "a1": (0.0, 0.0, 2.5),
    "a2": (12.0, 0.0, 2.5),
    "a3": (0.0, 8.0, 2.5),
    "a4": (12.0, 8.0, 2.5),
    "a5": (6.0, 4.0, 2.5),
}


def test_train_smoke_on_a_simulated_store(tmp_path: Path) -> None:
    """Train from a simulated survey through the CLI, then replay a simulated walk."""
    rng = random.Random(1)
    survey = rf.survey(
        ANCHORS, rf.lawnmower((0.5, 0.5, 11.5, 7.5), spacing=1.0), rng=rng, speed=0.6
    )
    walk = rf.track(ANCHORS, [(1.0, 1.0), (11.0, 1.0), (11.0, 7.0), (1.0, 7.0)], rng=rng)
    rf.write_csv(tmp_path / "survey.csv", survey, anchor_ids=list(ANCHORS))
    rf.write_csv(tmp_path / "walk.csv", walk, anchor_ids=list(ANCHORS))
    (tmp_path / "anchors.csv").write_text(
        "id,x,y,z\n" + "".join(f"{a},{x},{y},{z}\n" for a, (x, y, z) in ANCHORS.items())
    )
    (tmp_path / "zones.csv").write_text("name,x0,y0,x1,y1\nwest,0,0,6,8\neast,6,0,12,8\n")
    (tmp_path / "layout.csv").write_text("x,y\n0,0\n12,0\n12,8\n0,8\n")
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "train",
            "--survey",
            str(tmp_path / "survey.csv"),
            "--anchors",
            str(tmp_path / "anchors.csv"),
            "--layout",
            str(tmp_path / "layout.csv"),
            "--zones",
            str(tmp_path / "zones.csv"),
            "--max-iter",
            "60",
            "--out",
            str(tmp_path / "m.onnx"),
        ],
    )
    assert res.exit_code == 0, res.output
    model = PositionModel(tmp_path / "m.onnx")
    assert model.info.floorplan.zone_at(9, 4) == "east"
    res = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(tmp_path / "m.onnx"),
            "--track",
            str(tmp_path / "walk.csv"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["n"] > 70 and out["median_m"] < 2.5


def test_holdout_model_beats_knn_on_unseen_track(calib2021: Path) -> None:
    """The committed held-out model (tracks 1-3) against plain kNN on track 4."""
    train = [read_survey(calib2021 / f"calib{i}.csv") for i in (1, 2, 3)]
    test = read_survey(calib2021 / "calib4.csv")
    model = PositionModel(HOLDOUT_MODEL)
    ours = evaluate_track(model, test)
    knn = KnnBaseline(train, anchor_ids=model.anchor_ids).predict(test)
    knn_err = np.hypot(*(knn - test.xy).T)
    assert ours.median_m < 0.8 * float(np.median(knn_err))
    assert ours.p90_m < float(np.percentile(knn_err, 90))


def test_training_is_byte_for_byte_deterministic(calib2021: Path) -> None:
    """Rebuilding a committed model must not change its file when nothing else did."""
    from models.positioning.train import train_files

    def build() -> bytes:
        return train_files(
            [calib2021 / "calib4.csv"],
            anchors_path=calib2021 / "anchors.csv",
            layout_path=calib2021 / "layout.csv",
            zones_path=None,
            max_iter=20,
        )

    assert build() == build()
