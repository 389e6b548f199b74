from __future__ import annotations

import itertools
import math

import numpy as np

from edge_agent.inference.positioning.filter import FilterParams, ParticleFilter
from edge_agent.inference.positioning.layout import FloorPlan

# a 10 x 6 m room, a shelf run from x=3 to x=7 across y=3 (0.5 m deep)
PLAN = FloorPlan(
    outline=((0, 0), (10, 0), (10, 6), (0, 6)),
    obstacles=(((3, 2.75), (7, 2.75), (7, 3.25), (3, 3.25)),),
)


def test_noisy_fixes_are_smoothed() -> None:
    """A cart standing still under 1.5 m-sigma fixes is reported within half a metre."""
    rng = np.random.default_rng(1)
    pf = ParticleFilter(PLAN, meas_sigma=1.5, seed=0)
    truth = np.array([2.0, 1.5])
    outs, raw = [], []
    for i in range(90):
        z = truth + rng.normal(0, 1.5, 2)
        raw.append(np.hypot(*(z - truth)))
        est = pf.step(i / 3, z)
        assert est is not None
        outs.append(est)
    err = [math.dist(o, truth) for o in outs[30:]]
    assert np.median(err) < 0.5 < np.median(raw)
    steps = [math.dist(a, b) for a, b in itertools.pairwise(outs)]
    # jitter of a parked cart: small steps, never more than walking speed allows
    assert np.median(steps) < 0.3 and max(steps) <= 0.5 + 1e-9


def test_reported_speed_is_bounded_by_walking_speed() -> None:
    params = FilterParams(max_speed=1.5)
    pf = ParticleFilter(PLAN, meas_sigma=1.0, params=params, seed=0)
    first = pf.step(0.0, np.array([1.0, 1.0]))
    assert first is not None
    t, last = 0.0, first
    for _ in range(90):  # fixes jump to the far corner: the report walks there
        t += 1 / 3
        est = pf.step(t, np.array([9.0, 1.0]))
        assert est is not None
        assert math.dist(est, last) <= params.max_speed / 3 + 1e-9
        last = est
    assert math.dist(last, (9.0, 1.0)) < 1.0


def test_walls_hold_a_cart_beside_the_shelf() -> None:
    """A cart walking along the south face of the shelf, fixes scattered 1 m either
    side: reports and particles stay in the south aisle, never in or across the shelf."""
    rng = np.random.default_rng(5)
    pf = ParticleFilter(PLAN, meas_sigma=1.0, seed=3)
    prev = None
    for i in range(90):
        truth = np.array([3.5 + 3.0 * i / 90, 2.3])
        est = pf.step(i / 3, truth + rng.normal(0, 1.0, 2))
        assert est is not None
        e = np.array(est)
        assert PLAN.free(e[None])[0] and PLAN.free(pf.particles).all()
        if prev is not None:
            assert not PLAN.crosses_wall(prev[None], e[None])[0]
        if i > 10:
            assert e[1] < 2.75
        prev = e


def test_relocalises_when_the_fixes_move_behind_a_wall() -> None:
    pf = ParticleFilter(PLAN, meas_sigma=1.0, seed=3)
    for i in range(10):
        pf.step(i / 3, np.array([5.0, 2.0]))
    t = 10 / 3
    for _ in range(60):
        t += 1 / 3
        est = pf.step(t, np.array([5.0, 4.5]))
        assert est is not None and PLAN.free(np.array([est]))[0]
    assert est is not None
    assert est[1] > 3.25 and math.dist(est, (5.0, 4.5)) < 1.0


def test_no_measurement_before_first_fix_and_gaps_only_predict() -> None:
    pf = ParticleFilter(PLAN, meas_sigma=1.0, seed=0)
    assert pf.step(0.0, None) is None
    assert pf.step(0.3, np.array([1.0, 1.0])) is not None
    est = pf.step(10.0, None)  # a 10 s gap: a position, still on the floor
    assert est is not None and PLAN.free(np.array([est]))[0]
