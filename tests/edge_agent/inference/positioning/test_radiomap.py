from __future__ import annotations

import numpy as np
import pytest

from edge_agent.inference.positioning.layout import FloorPlan
from edge_agent.inference.positioning.pathloss import PathLoss
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


# the 10 x 6 m room split by a partition at x = 5 with a 1 m door at its south end
PARTITIONED = FloorPlan(
    outline=((0, 0), (10, 0), (10, 6), (0, 6)),
    obstacles=(((4.95, 1.0), (5.05, 1.0), (5.05, 6.0), (4.95, 6.0)),),
)
ANCHORS_3D = np.column_stack([ANCHORS, np.full(len(ANCHORS), 2.5)])


def _walled_rssi(xy: np.ndarray, rng: np.random.Generator, *, noise_db: float = 2.0) -> np.ndarray:
    """Exponent 2.2, 2 dB per wall segment (the partition is two)."""
    out = np.empty((len(xy), len(ANCHORS)))
    for j, a in enumerate(ANCHORS_3D):
        d = np.sqrt(np.sum((xy - a[:2]) ** 2, axis=1) + (a[2] - 1.3) ** 2)
        walls = PARTITIONED.walls_between((a[0], a[1]), xy)
        out[:, j] = -45.0 - 22.0 * np.log10(d) - 2.0 * walls + rng.normal(0, noise_db, len(xy))
    return out


def test_walls_between_counts_each_segment_crossed() -> None:
    pts = np.array([[9.0, 3.0], [9.0, 0.5], [1.0, 3.0]])
    # through the partition (two faces), under it through the door, same side
    assert PARTITIONED.walls_between((1.0, 0.5), pts).tolist() == [2, 0, 0]


def test_path_loss_fit_recovers_distance_and_wall_terms() -> None:
    xy, _ = _survey()
    xy = xy[PARTITIONED.free(xy)]
    rssi = _walled_rssi(xy, np.random.default_rng(3))
    pl = PathLoss.fit(
        xy, rssi, anchors=ANCHORS_3D, plan=PARTITIONED, floor_dbm=-100.0, tag_height_m=1.3
    )
    np.testing.assert_allclose(pl.coef[:, 1], 2.2, atol=0.25)  # exponent
    np.testing.assert_allclose(pl.coef[:, 2], 2.0, atol=0.6)  # dB per wall segment
    np.testing.assert_allclose(pl.residual_var, 4.0, rtol=0.3)


def test_path_loss_prior_fills_the_unsurveyed_half() -> None:
    """Survey only the west room: east of the partition the kernel-only map can only
    repeat the west's RSSI, the map built around the path-loss prior predicts it."""
    rng = np.random.default_rng(4)
    xy, _ = _survey()
    xy = xy[PARTITIONED.free(xy)]
    rssi = _walled_rssi(xy, rng)
    west = xy[:, 0] < 4.5
    pl = PathLoss.fit(
        xy[west],
        rssi[west],
        anchors=ANCHORS_3D,
        plan=PARTITIONED,
        floor_dbm=-100.0,
        tag_height_m=1.3,
    )
    bounds = (0.0, 0.0, 10.0, 6.0)
    kernel = RadioMap.fit(xy[west], rssi[west], bounds=bounds)
    with_prior = RadioMap.fit(xy[west], rssi[west], bounds=bounds, prior=pl)
    east = np.array([[7.0, 2.0], [8.5, 4.5], [6.0, 5.0]])
    truth = _walled_rssi(east, np.random.default_rng(0), noise_db=0.0)

    def at(rmap: RadioMap, pts: np.ndarray) -> np.ndarray:
        cell = ((pts - rmap.origin) / rmap.cell_m + 0.5).astype(int)
        return rmap.mean[cell[:, 0], cell[:, 1]].astype(np.float64)

    err_prior = np.abs(at(with_prior, east) - truth).mean()
    err_kernel = np.abs(at(kernel, east) - truth).mean()
    assert err_prior < 1.5 < 3 * err_prior < err_kernel
    # where the survey passed, the two maps agree
    west_pts = np.array([[1.25, 1.25], [3.25, 4.25]])
    np.testing.assert_allclose(at(with_prior, west_pts), at(kernel, west_pts), atol=1.5)
