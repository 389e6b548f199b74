from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from edge_agent.inference.positioning.cli import app
from edge_agent.inference.positioning.errors import ModelError
from edge_agent.inference.positioning.model import PositionModel
from edge_agent.inference.positioning.pipeline import Positioner, ScanReport
from edge_agent.inference.positioning.survey import read_survey, write_survey
from models.positioning import DEFAULT_MODEL, HOLDOUT_MODEL


def test_committed_model_loads_and_predicts_inside_the_flat() -> None:
    m = PositionModel(DEFAULT_MODEL)
    assert m.anchor_ids == ("1", "2", "3", "4", "5", "6")
    assert DEFAULT_MODEL.stat().st_size < 300_000
    # strongest near anchor 1 (5.48, 2.41), others weak: the fix lands near anchor 1
    near_a1 = m.predict(np.array([[-45.0, -80, -70, -75, -68, -72]]))[0]
    assert np.hypot(*(near_a1 - (5.48, 2.41))) < np.hypot(*(near_a1 - (0.79, 6.75)))


def test_corrupt_model_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError):
        PositionModel(tmp_path / "bad.onnx")


def test_positioner_counts_bad_reports_and_returns_zones() -> None:
    reg = CollectorRegistry()
    pos = Positioner(PositionModel(DEFAULT_MODEL), registry=reg)
    assert pos.observe("c1", [ScanReport("1", -50.0, 0.0)]) is None  # one anchor: no fix yet
    upd = pos.observe(
        "c1",
        [
            ScanReport("1", -45.0, 0.3),
            ScanReport("2", -80.0, 0.3),
            ScanReport("99", -60.0, 0.3),  # not one of ours
            ScanReport("3", 12.0, 0.3),  # impossible RSSI
        ],
    )
    assert upd is not None and upd.cart_id == "c1" and upd.anchors_heard == 2
    assert 0 <= upd.x <= 9.1 and 0 <= upd.y <= 7.1
    bad = {
        s.labels["reason"]: s.value
        for m in reg.collect()
        for s in m.samples
        if m.name == "storefleet_positioning_bad_reports" and s.name.endswith("_total")
    }
    assert bad == {"unknown_beacon": 1.0, "rssi_out_of_range": 1.0}


def test_eval_cli_prints_json_last_line(calib2021: Path, tmp_path: Path) -> None:
    """The held-out model on 100 s of track 4, which it never saw."""
    track = read_survey(calib2021 / "calib4.csv")
    write_survey(tmp_path / "slice.csv", track.slice(0, 300))
    res = CliRunner().invoke(
        app,
        ["eval", "--model", str(HOLDOUT_MODEL), "--track", str(tmp_path / "slice.csv"), "--json"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["n"] >= 295
    assert 0.2 < out["median_m"] < 2.0 and out["median_m"] <= out["p90_m"] < 4.0


def test_eval_cli_rejects_a_bad_track(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("ts,x\n1,2\n")
    res = CliRunner().invoke(
        app, ["eval", "--model", str(HOLDOUT_MODEL), "--track", str(tmp_path / "t.csv")]
    )
    assert res.exit_code == 2


def test_radio_map_filter_beats_the_point_fix_filter_on_an_unseen_track(calib2021: Path) -> None:
    """Round 2: the committed held-out model's radio map, weighed in the particle filter,
    against round 1's filter fed the MLP's point fix, on track 4 (never trained on)."""
    from edge_agent.inference.positioning.evaluate import evaluate_track

    model = PositionModel(HOLDOUT_MODEL)
    assert model.radio_map is not None
    track = read_survey(calib2021 / "calib4.csv")
    with_map = evaluate_track(model, track)
    fix_only = evaluate_track(model, track, use_radio_map=False)
    # measured: 1.07 m / 2.07 m against 1.25 m / 2.90 m (round 2's kernel-only map:
    # 0.93 m / 2.03 m on this fold; round 3's path-loss prior wins on the other three)
    assert with_map.median_m < 0.9 * fix_only.median_m
    assert with_map.p90_m < 0.8 * fix_only.p90_m
