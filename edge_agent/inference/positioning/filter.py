"""Particle filter for one cart: a random-walk motion model capped at walking speed that
cannot pass through walls, weighted by the fingerprint model's position estimate.

Why particles and not a Kalman filter: walls make the position density non-Gaussian (a
cart on one side of a shelf run is not "half way through it"), and rejecting moves that
cross a wall is one vectorised test per update.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.inference.positioning.layout import FloorPlan

FloatArray = npt.NDArray[np.float64]
# log-likelihood of the current scan at each particle position (N x 2 -> N)
Likelihood = Callable[[FloatArray], FloatArray]
# the point fix (x, y) of the current scan, computed only when the filter needs it
Fix = Callable[[], FloatArray]


@dataclass(frozen=True, slots=True)
class FilterParams:
    # 150 particles: on calib2021's held-out tracks 100, 150 and 300 were within noise of
    # each other (1000 gave no gain in round 1), and the update cost scales with the count
    n_particles: int = 150
    # diffusion of the random walk, m per sqrt(s): shoppers stand, browse and walk in turns
    walk_sigma: float = 0.5
    # fastest plausible cart: a brisk walk is 1.4 m/s
    max_speed: float = 1.5
    # a gap longer than this is treated as this long (the cart may have gone anywhere)
    max_gap_s: float = 5.0
    # share of particles re-seeded around the measurement when it disagrees with all of
    # them, so a filter that locked onto the wrong room recovers
    reseed_fraction: float = 0.1
    # the same with a radio map (see ``MAP_FILTER``)
    map_reseed_fraction: float = 0.1


# With a radio map the likelihood is tempered (weak per scan), so the motion model has to
# carry a moving cart: 1 m/sqrt(s) kept up with a simulated 1 m/s cart (median 1.3 m, where
# 0.5 lagged to 3.6 m), at a cost of ~5 % on calib2021's slow robot (mean over 4 held-out
# tracks 1.02 m / 2.21 m against 0.97 m / 2.11 m). Re-seeding around the point fix is what
# lets the filter catch up after a fast turn.
MAP_FILTER = FilterParams(walk_sigma=1.0, map_reseed_fraction=0.1)


class ParticleFilter:
    def __init__(
        self,
        floorplan: FloorPlan,
        *,
        meas_sigma: float,
        params: FilterParams | None = None,
        seed: int = 0,
    ) -> None:
        self.plan = floorplan
        self.params = params or FilterParams()
        self.meas_sigma = meas_sigma
        self._rng = np.random.default_rng(seed)
        self._p: FloatArray | None = None
        self._w: FloatArray = np.empty(0)
        self._t = 0.0
        self._out: FloatArray | None = None
        self._w_prev: FloatArray = np.empty(0)
        self._lik_slow = 0.0
        self._lik_fast = 0.0
        self.relocalisations = 0

    @property
    def initialised(self) -> bool:
        return self._p is not None

    @property
    def particles(self) -> FloatArray:
        return np.empty((0, 2)) if self._p is None else self._p.copy()

    def _sample_free(self, center: FloatArray, sigma: float, n: int) -> FloatArray:
        """``n`` points in free space near ``center`` (anywhere on the floor if none are)."""
        got = np.empty((0, 2))
        x0, y0, x1, y1 = self.plan.bounds
        for attempt in range(8):
            if attempt < 4:
                cand = center + self._rng.normal(0.0, sigma * (1 + attempt), (4 * n, 2))
            else:
                cand = self._rng.uniform((x0, y0), (x1, y1), (8 * n, 2))
            got = np.vstack([got, cand[self.plan.free(cand)]])
            if len(got) >= n:
                return got[:n]
        return np.resize(got if len(got) else center.reshape(1, 2), (n, 2))

    def step(
        self,
        t: float,
        z: FloatArray | None,
        *,
        likelihood: Likelihood | None = None,
        fix: Fix | None = None,
    ) -> tuple[float, float] | None:
        """Advance to time ``t`` and fold in measurement ``z`` (x, y) if there is one.
        With ``likelihood`` (a radio map's), particles are weighed by it and ``z`` only
        seeds and re-seeds them; without, by a Gaussian of ``meas_sigma`` around ``z``.
        ``fix`` instead of ``z``: the same, computed only if it is used (with a radio map
        most updates re-seed nothing, and the model run is ~15 % of an update).
        Returns the position estimate, or None before the first measurement."""
        n = self.params.n_particles
        if self._p is None:
            if z is None and fix is not None:
                z = np.asarray(fix(), dtype=np.float64)
            if z is None:
                return None
            self._p = self._sample_free(np.asarray(z, dtype=np.float64), self.meas_sigma, n)
            self._w = np.full(n, 1.0 / n)
            self._t = t
            return self._emit(0.0)
        dt = min(max(t - self._t, 0.0), self.params.max_gap_s)
        self._t = max(t, self._t)
        self._predict(dt)
        if likelihood is not None or z is not None:
            self._update(None if z is None else np.asarray(z, dtype=np.float64), likelihood, fix)
        return self._emit(dt)

    def _predict(self, dt: float) -> None:
        assert self._p is not None
        if dt <= 0:
            return
        step = self._rng.normal(0.0, self.params.walk_sigma * math.sqrt(dt), self._p.shape)
        norm = np.sqrt(np.einsum("ij,ij->i", step, step))[:, None]
        cap = self.params.max_speed * dt
        step *= np.minimum(1.0, cap / np.maximum(norm, 1e-9))
        moved = self._p + step
        # Particles start in free space (seeding and re-seeding sample only free points,
        # resampling copies them), and a move that crosses no wall cannot leave it, so
        # the wall test alone keeps them free; a point-in-polygon test per particle per
        # update would cost as much again.
        ok = ~self.plan.crosses_wall(self._p, moved, max_move=cap)
        # a particle whose move hits a wall stays put: it "bumps" rather than teleports
        self._p = np.where(ok[:, None], moved, self._p)

    def _update(
        self, z: FloatArray | None, likelihood: Likelihood | None, fix: Fix | None = None
    ) -> None:
        assert self._p is not None
        self._w_prev = self._w
        if likelihood is None:
            assert z is not None
            d2 = np.sum((self._p - z) ** 2, axis=1)
            lik = np.exp(-0.5 * d2 / self.meas_sigma**2)
        else:
            # a log-likelihood is only defined up to a constant per scan: scale the best
            # particle to 1, which also keeps exp() in range
            ll = likelihood(self._p)
            lik = np.exp(ll - ll.max())
        # a floor on the likelihood keeps one wild fingerprint from wiping out the cloud
        w = self._w * (lik + 1e-3)
        total = w.sum()
        self._w = w / total if total > 0 and np.isfinite(total) else np.full(len(w), 1 / len(w))
        # Augmented MCL: when the fixes have agreed with the cloud much less lately than
        # usual, the cart is elsewhere (e.g. the cloud locked onto the wrong side of a
        # shelf run): re-seed a share of the particles around the fix.
        cap = self.params.reseed_fraction if likelihood is None else self.params.map_reseed_fraction
        if cap > 0:
            avg = float(np.dot(self._w_prev, lik))
            self._lik_slow += 0.05 * (avg - self._lik_slow)
            self._lik_fast += 0.5 * (avg - self._lik_fast)
        if cap > 0 and (z is not None or fix is not None) and self._lik_slow > 0:
            share = min(cap, 1.0 - self._lik_fast / self._lik_slow)
            k = int(share * len(self._p))
            if k > 0:
                if z is None:
                    assert fix is not None
                    z = np.asarray(fix(), dtype=np.float64)
                idx = np.argsort(self._w)[:k]
                self._p[idx] = self._sample_free(z, self.meas_sigma, k)
                self._w[idx] = 1.0 / len(self._p)
                self._w /= self._w.sum()
        if 1.0 / np.sum(self._w**2) < len(self._p) / 2:
            self._resample()

    def _resample(self) -> None:
        """Systematic resampling: low variance, deterministic given the seed."""
        assert self._p is not None
        n = len(self._p)
        pos = (self._rng.random() + np.arange(n)) / n
        idx = np.minimum(np.searchsorted(np.cumsum(self._w), pos), n - 1)
        self._p = self._p[idx]
        self._w = np.full(n, 1.0 / n)

    def _emit(self, dt: float) -> tuple[float, float]:
        """The reported position: the weighted mean of the particles reachable from the
        last report without crossing a wall, moved at most ``max_speed * dt``."""
        assert self._p is not None
        if self._out is None:
            self._out = self._snap(np.average(self._p, axis=0, weights=self._w))
            return float(self._out[0]), float(self._out[1])
        last = self._out
        # the weights are normalised, so the weighted mean is one product
        target = self._w @ self._p
        # The last report is in free space, and a path from it that crosses no wall
        # cannot leave free space: one wall test covers the whole move, and every point
        # on it, so the capped step towards the target needs no test of its own.
        if not self.plan.crosses_wall_one(
            (float(last[0]), float(last[1])), (float(target[0]), float(target[1]))
        ):
            return self._move_towards(last, target, dt, checked=True)
        # the mean is behind a wall (a cloud split by a shelf run): use the reachable part
        reach = ~self.plan.crosses_wall(np.repeat(last[None], len(self._p), axis=0), self._p)
        if float(self._w[reach].sum()) < 0.25:
            # most of the belief is behind a wall from the last report: the filter has
            # relocalised, and walking the report through the wall would be worse than a jump
            self.relocalisations += 1
            self._out = self._snap(np.average(self._p, axis=0, weights=self._w))
            return float(self._out[0]), float(self._out[1])
        w = self._w[reach]
        target = np.average(self._p[reach], axis=0, weights=w if w.sum() > 0 else None)
        return self._move_towards(last, target, dt)

    def _move_towards(
        self, last: FloatArray, target: FloatArray, dt: float, *, checked: bool = False
    ) -> tuple[float, float]:
        move = target - last
        dist = math.hypot(float(move[0]), float(move[1]))
        cap = self.params.max_speed * dt
        if dist > cap:
            move *= cap / dist
        cand = last + move
        if not checked and (
            not self.plan.free(cand[None])[0] or self.plan.crosses_wall(last[None], cand[None])[0]
        ):
            cand = last
        self._out = cand
        return float(cand[0]), float(cand[1])

    def _snap(self, p: FloatArray) -> FloatArray:
        if self.plan.free(p[None])[0]:
            return p
        assert self._p is not None
        return self._p[int(np.argmin(np.sum((self._p - p) ** 2, axis=1)))].copy()
