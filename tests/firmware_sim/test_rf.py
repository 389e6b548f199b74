from __future__ import annotations

import itertools
import math
import random
import statistics
from pathlib import Path
from typing import cast

from firmware_sim import rf

ANCHORS = {"a1": (0.0, 0.0, 2.5), "a2": (20.0, 0.0, 2.5), "a3": (10.0, 12.0, 2.5)}


def test_anchor_radio_is_fixed_per_store_and_in_range() -> None:
    for aid in ANCHORS:
        r = rf.anchor_radio(aid, env_seed=4)
        assert r == rf.anchor_radio(aid, env_seed=4)
        assert 1.5 <= r.exponent <= 3.1 and 5.0 <= r.shadow_std <= 8.0
    assert rf.anchor_radio("a1", env_seed=4) != rf.anchor_radio("a1", env_seed=5)


def test_shadowing_std_matches_the_anchor_and_misses_rise_with_distance() -> None:
    """Residuals against the log-distance mean, over many spots, have the anchor's std."""
    rng = random.Random(11)
    params = rf.RfParams(base_miss=0.0, sensitivity_dbm=-200.0)  # see every sample
    aid, pos = "a1", ANCHORS["a1"]
    radio = rf.anchor_radio(aid)
    res = []
    for _ in range(3000):
        p = (rng.uniform(0, 40), rng.uniform(0, 40))
        d = math.dist((p[0], p[1], params.tag_height_m), pos)
        v = rf.rssi_samples({aid: pos}, p, rng=rng, params=params)[aid]
        assert v is not None
        res.append(v - rf.mean_rssi(d, exponent=radio.exponent, params=params))
    assert abs(statistics.fmean(res)) < 1.0
    assert 0.85 * radio.shadow_std < statistics.pstdev(res) < 1.15 * radio.shadow_std

    near = [rf.rssi_samples(ANCHORS, (1.0, 1.0), rng=rng)["a1"] for _ in range(2000)]
    far = [rf.rssi_samples(ANCHORS, (19.0, 11.0), rng=rng)["a1"] for _ in range(2000)]
    miss_near = sum(v is None for v in near) / 2000
    miss_far = sum(v is None for v in far) / 2000
    assert 0.03 < miss_near < 0.08  # the 5 % base rate: collisions, scan gaps
    assert miss_far > miss_near + 0.05


def test_body_blocking_costs_dbm_behind_the_walker() -> None:
    params = rf.RfParams(base_miss=0.0, sensitivity_dbm=-200.0)
    a = {"a1": ANCHORS["a1"]}

    def mean(heading: float) -> float:
        rng = random.Random(2)
        vals = [
            rf.rssi_samples(a, (6.0, 0.0), rng=rng, heading=heading, params=params)["a1"]
            for _ in range(500)
        ]
        return statistics.fmean(v for v in vals if v is not None)

    # walking towards the anchor (heading pi) vs away from it (0): the body is in the way
    assert mean(math.pi) - mean(0.0) > 0.8 * params.body_loss_db


def test_survey_and_track_rows_are_seeded_and_written(tmp_path: Path) -> None:
    path = rf.lawnmower((1, 1, 19, 11), spacing=2.0)
    s1 = rf.survey(ANCHORS, path, rng=random.Random(3))
    assert s1 == rf.survey(ANCHORS, path, rng=random.Random(3))
    # ts, x and y are always set; only the per-anchor RSSI columns can be None
    t = cast(list[dict[str, float]],
             rf.track(ANCHORS, [(1.0, 1.0), (15.0, 1.0)], rng=random.Random(3), speed=1.0))
    assert len(t) == 42  # 14 m at 1 m/s, 3 scans a second
    speeds = [
        math.dist((a["x"], a["y"]), (b["x"], b["y"])) / (b["ts"] - a["ts"])
        for a, b in itertools.pairwise(t)
    ]
    assert max(speeds) < 1.1
    rf.write_csv(tmp_path / "s.csv", s1, anchor_ids=list(ANCHORS))
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "ts,x,y,rssi_a1,rssi_a2,rssi_a3" and len(lines) == len(s1) + 1
