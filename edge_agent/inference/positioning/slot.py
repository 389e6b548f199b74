"""The in-aisle module's positioning model as the model installer replaces it
(decision 0042).

The candidate must load as a ``PositionModel`` (its anchors, features and floor plan
in its metadata), pass ``PositionModel.check``, and know at least ``MIN_SHARED`` of the
store layout's anchors (a model surveyed in another store would place every cart by
guesswork). It goes in as a new ``PositionerLocator`` - the carts' tracks start again,
as the anchors and the floor plan may have changed - and after the swap one scan
window hearing every anchor at ``PROBE_RSSI_DBM`` goes through the positioner's own path
(anchor index, smoothed features, the model now in place): its fix must be finite and
on or near the model's floor.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry

from edge_agent.inference.installed import ModelRejected
from edge_agent.inference.positioning.errors import PositioningError
from edge_agent.inference.positioning.model import PositionModel, check_fixes
from edge_agent.inference.positioning.pipeline import Positioner, ScanReport
from edge_agent.inference.triggers.storemap import PositionerLocator, StoreMap

if TYPE_CHECKING:
    from edge_agent.inference.triggers.service import Locator

# Two anchors are what the positioner needs for a fix (``Positioner.min_anchors``).
MIN_SHARED = 2
# A cart among the anchors: BLE at a few metres in a store hears -60 to -80 dBm.
PROBE_RSSI_DBM = -70.0
# A regressor extrapolates past the walls for odd inputs (the filter keeps carts inside),
# but a fix further out than half the floor's size again is not about this floor.
MARGIN_SHARE = 0.5


class Locating(Protocol):
    locator: Locator | None


class PositioningSlot:
    name = "positioning"

    def __init__(self, triggers: Locating, *, store_map: StoreMap | None,
                 registry: CollectorRegistry) -> None:
        self.triggers = triggers
        self.store_map = store_map
        self.registry = registry

    def load(self, path: Path) -> Locator | None:
        try:
            model = PositionModel(path)
            model.check()
        except PositioningError as err:
            raise ModelRejected(self.name, str(err)) from err
        if self.store_map is not None:
            shared = {a.key for a in self.store_map.anchors} & set(model.anchor_ids)
            if len(shared) < MIN_SHARED:
                raise ModelRejected(self.name, f"knows {len(shared)} of this store's "
                                    f"anchors, needs {MIN_SHARED}")
        return PositionerLocator(Positioner(model, registry=self.registry), self.store_map)

    def swap(self, model: Locator | None) -> Locator | None:
        previous, self.triggers.locator = self.triggers.locator, model
        return previous

    def probe(self) -> None:
        locator = self.triggers.locator
        if not isinstance(locator, PositionerLocator):
            raise ModelRejected(self.name, "after the swap: no positioning model in place")
        positioner = locator.positioner
        where = positioner.model.name
        try:
            fix = positioner.probe([ScanReport(a, PROBE_RSSI_DBM, 0.0)
                                    for a in positioner.model.anchor_ids])
        except Exception as err:  # onnxruntime raises several unexported error types
            raise ModelRejected(self.name, f"after the swap: {where}: {err}") from err
        try:
            check_fixes(where, fix, rows=1)
        except PositioningError as err:
            raise ModelRejected(self.name, f"after the swap: {err}") from err
        x0, y0, x1, y1 = positioner.plan.bounds
        dx, dy = (x1 - x0) * MARGIN_SHARE, (y1 - y0) * MARGIN_SHARE
        x, y = float(fix[0]), float(fix[1])
        if not (x0 - dx <= x <= x1 + dx and y0 - dy <= y <= y1 + dy):
            raise ModelRejected(self.name, f"after the swap: placed a cart at ({x:.1f}, "
                                f"{y:.1f}), off the floor {positioner.plan.bounds}")
