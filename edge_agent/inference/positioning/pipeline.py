"""The online positioning pipeline of the store box: BLE scan reports from carts in,
(x, y, zone) per cart out.

    positioner = Positioner(PositionModel(path), registry=metrics_registry)
    update = positioner.observe("cart-7", [ScanReport("3", -67.0, t), ...])
    if update: publish(update.x, update.y, update.zone)

Each call is one scan window of one cart; the model runs once per call (~tens of µs)
and the particle filter once, so ``observe`` is cheap enough to call inline on the event
loop for a few hundred carts at 3 Hz.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

from edge_agent.inference.positioning.features import RssiSmoother
from edge_agent.inference.positioning.filter import MAP_FILTER, FilterParams, ParticleFilter
from edge_agent.inference.positioning.layout import FloorPlan
from edge_agent.inference.positioning.model import PositionModel
from edge_agent.metrics import registry_scoped

logger = logging.getLogger(__name__)

# Physically possible RSSI for BLE: above 0 dBm or below -127 dBm is a corrupt report.
RSSI_MIN_DBM = -127.0
RSSI_MAX_DBM = 0.0


@dataclass(frozen=True, slots=True)
class ScanReport:
    beacon_id: str
    rssi: float  # dBm
    t: float  # seconds


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    cart_id: str
    t: float
    x: float
    y: float
    zone: str | None
    anchors_heard: int


class PositioningMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.updates = Counter(
            "storefleet_positioning_updates_total", "position updates produced", registry=registry
        )
        self.bad_reports = Counter(
            "storefleet_positioning_bad_reports_total",
            "scan reports rejected",
            ["reason"],
            registry=registry,
        )
        self.update_seconds = Histogram(
            "storefleet_positioning_update_seconds",
            "time to fold one scan window into a cart's position",
            buckets=(5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2),
            registry=registry,
        )


class _Cart:
    __slots__ = ("filter", "last_t", "smoother")

    def __init__(self, smoother: RssiSmoother, pf: ParticleFilter) -> None:
        self.smoother = smoother
        self.filter = pf
        self.last_t = -math.inf


class Positioner:
    def __init__(
        self,
        model: PositionModel,
        *,
        floorplan: FloorPlan | None = None,
        filter_params: FilterParams | None = None,
        registry: CollectorRegistry | None = None,
        min_anchors: int = 2,
        use_radio_map: bool = True,
    ) -> None:
        self.model = model
        self.plan = floorplan if floorplan is not None else model.info.floorplan
        self.radio_map = model.radio_map if use_radio_map else None
        self.filter_params = filter_params or (
            MAP_FILTER if self.radio_map is not None else FilterParams()
        )
        # one set per registry: a model rollout builds a second positioner (decision 0042)
        self.metrics = registry_scoped(registry if registry is not None else CollectorRegistry(),
                                       "positioning", PositioningMetrics)
        # fewer anchors than this in a window: the fingerprint is ambiguous, so the filter
        # only predicts (the cart keeps its last position, growing uncertain)
        self.min_anchors = min_anchors
        self._index = {a: i for i, a in enumerate(model.anchor_ids)}
        self._carts: dict[str, _Cart] = {}

    def _cart(self, cart_id: str) -> _Cart:
        cart = self._carts.get(cart_id)
        if cart is None:
            # seeded per cart so a replay gives the same track every time
            seed = zlib.crc32(cart_id.encode())
            cart = _Cart(
                RssiSmoother(len(self._index), params=self.model.info.features),
                ParticleFilter(
                    self.plan,
                    meas_sigma=self.model.info.meas_sigma_m,
                    params=self.filter_params,
                    seed=seed,
                ),
            )
            self._carts[cart_id] = cart
        return cart

    def _fix(self, vec: np.ndarray) -> np.ndarray:
        fix: np.ndarray = self.model.predict(vec[None])[0]
        return fix

    def probe(self, reports: Iterable[ScanReport]) -> np.ndarray:
        """The model's point fix for one scan window, by the path a cart's scan takes
        (anchor index, smoothed features) but on no cart's track and not counted: the
        model installer's check after a swap."""
        smoother = RssiSmoother(len(self._index), params=self.model.info.features)
        t = -math.inf
        for r in reports:
            idx = self._index.get(r.beacon_id)
            if idx is not None:
                smoother.add(idx, float(r.rssi), r.t)
                t = max(t, r.t)
        return self._fix(smoother.vector(t))

    def forget(self, cart_id: str) -> None:
        """Drop a cart's state (returned to the corral, powered off)."""
        self._carts.pop(cart_id, None)

    def observe(
        self, cart_id: str, reports: Iterable[ScanReport], *, t: float | None = None
    ) -> PositionUpdate | None:
        """Fold one scan window into the cart's position. ``t`` defaults to the newest
        report's time; an empty window with ``t`` given only advances the filter."""
        with self.metrics.update_seconds.time():
            cart = self._cart(cart_id)
            newest = -math.inf
            for r in reports:
                idx = self._index.get(r.beacon_id)
                if idx is None:
                    self.metrics.bad_reports.labels("unknown_beacon").inc()
                    continue
                if not (isinstance(r.rssi, int | float) and RSSI_MIN_DBM <= r.rssi <= RSSI_MAX_DBM):
                    self.metrics.bad_reports.labels("rssi_out_of_range").inc()
                    continue
                if not math.isfinite(r.t) or r.t < cart.last_t - self.model.info.features.expiry_s:
                    # older than the feature memory: it cannot change anything now
                    self.metrics.bad_reports.labels("stale").inc()
                    continue
                cart.smoother.add(idx, float(r.rssi), r.t)
                newest = max(newest, r.t)
            now = t if t is not None else newest
            if not math.isfinite(now):
                return None
            now = max(now, cart.last_t)
            cart.last_t = now
            heard = cart.smoother.heard(now)
            z = None
            likelihood = None
            fix = None
            if heard >= self.min_anchors:
                vec = cart.smoother.vector(now)
                if self.radio_map is not None:
                    likelihood = partial(self.radio_map.log_likelihood, vec)
                    # with a radio map the point fix only seeds and re-seeds particles:
                    # the filter runs the model only when it does either
                    fix = partial(self._fix, vec)
                else:
                    z = self._fix(vec)
            est = cart.filter.step(now, z, likelihood=likelihood, fix=fix)
            if est is None:
                return None
            self.metrics.updates.inc()
            x, y = est
            return PositionUpdate(cart_id, now, x, y, self.plan.zone_at(x, y), heard)


def replay_rows(
    positioner: Positioner,
    cart_id: str,
    ts: np.ndarray,
    rssi: np.ndarray,
    anchor_ids: tuple[str, ...],
) -> np.ndarray:
    """Feed a recording row by row (one row = one scan window) through ``positioner``;
    returns N x 2 estimates (NaN before the first fix)."""
    out = np.full((len(ts), 2), np.nan)
    for i, t in enumerate(ts):
        reports = [
            ScanReport(anchor_ids[j], float(rssi[i, j]), float(t))
            for j in np.flatnonzero(~np.isnan(rssi[i]))
        ]
        upd = positioner.observe(cart_id, reports, t=float(t))
        if upd is not None:
            out[i] = (upd.x, upd.y)
    return out
