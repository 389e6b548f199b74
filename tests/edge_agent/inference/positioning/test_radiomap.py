from __future__ import annotations

import numpy as np
import pytest

from edge_agent.inference.positioning.layout import FloorPlan
from edge_agent.inference.positioning.radiomap import RadioMap, RadioMapParams

ANCHORS = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 6.0], [10.0, 6.0]])


def _rssi(xy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = np.hypot(*(xy[:, None, :] - ANCHORS[None]).transpose(2, 0, 1))
    return -59.0 - 20 * np.log10(np.maximum(d, 0.5)) + rng.normal(0, 2.0, d.shape)


def _survey() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    g = np.stack(np.meshgrid(np.arange(0.25, 10, 0.5), np.arange(0.25, 6, 0.5)), -1)
    xy = g.reshape(-1, 2)
    return xy, _rssi(xy, rng)


def test_likelihood_peaks_where_the_scan_was_taken() -> None:
    xy, feats = _survey()
    rmap = RadioMap.fit(xy, feats, bounds=(0, 0, 10, 6))
    rng = np.random.default_rng(1)
    grid = np.stack(np.meshgrid(np.arange(0.1, 10, 0.2), np.arange(0.1, 6, 0.2)), -1)
    grid = grid.reshape(-1, 2)
    errs = []
    for truth in ([2.0, 1.5], [8.0, 4.5], [5.0, 3.0]):
        scan = _rssi(np.array([truth]), rng)[0]
        best = grid[int(np.argmax(rmap.log_likelihood(scan, grid)))]
        errs.append(np.hypot(*(best - truth)))
    assert max(errs) < 1.5


def test_low_survey_support_means_a_wider_spread() -> None:
    xy, feats = _survey()
    west = xy[:, 0] < 5  # survey only the west half
    rmap = RadioMap.fit(xy[west], feats[west], bounds=(0, 0, 10, 6))
    nx = rmap.mean.shape[0]
    assert rmap.inv_var[nx // 5].mean() > 5 * rmap.inv_var[4 * nx // 5].mean()


def test_json_roundtrip_is_float16_close() -> None:
    xy, feats = _survey()
    rmap = RadioMap.fit(xy, feats, bounds=(0, 0, 10, 6), params=RadioMapParams(temperature=4.0))
    back = RadioMap.from_json(rmap.to_json())
    assert back.temperature == 4.0 and back.mean.shape == rmap.mean.shape
    np.testing.assert_allclose(back.mean, rmap.mean, atol=0.1)
    pts = np.array([[1.0, 1.0], [9.0, 5.0]])
    np.testing.assert_allclose(
        back.log_likelihood(feats[0], pts), rmap.log_likelihood(feats[0], pts), rtol=0.01
    )


def test_truncated_map_is_rejected() -> None:
    xy, feats = _survey()
    text = (
        RadioMap.fit(xy, feats, bounds=(0, 0, 10, 6)).to_json().replace('"shape": [', '"shape": [9')
    )
    with pytest.raises(ValueError):
        RadioMap.from_json(text)


def test_wall_grid_and_one_move_test_agree_with_the_full_test() -> None:
    """The spatial index is an optimisation only: same answers as every-wall testing."""
    plan = FloorPlan(
        outline=((0, 0), (10, 0), (10, 6), (0, 6)),
        obstacles=(
            ((3, 2.75), (7, 2.75), (7, 3.25), (3, 3.25)),
            ((8, 1), (8.1, 1), (8.1, 5), (8, 5)),
        ),
    )
    rng = np.random.default_rng(2)
    for scale in (0.1, 0.4, 3.0):
        a = rng.uniform((-1, -1), (11, 7), (4000, 2))
        b = a + rng.normal(0, scale, a.shape)
        full = plan._crosses_all(a, b)
        assert full.any()
        np.testing.assert_array_equal(plan.crosses_wall(a, b), full)
        one = [
            plan.crosses_wall_one((p[0], p[1]), (q[0], q[1]))
            for p, q in zip(a[:500], b[:500], strict=True)
        ]
        np.testing.assert_array_equal(one, full[:500])
        free = plan.free(a)
        short = np.hypot(*(b - a).T) <= 0.5
        np.testing.assert_array_equal(
            plan.crosses_wall(a[free & short], b[free & short], max_move=0.5), full[free & short]
        )
