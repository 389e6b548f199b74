"""Indoor positioning of carts on the store box: BLE scan reports -> (x, y, zone).

``PositionModel`` (onnxruntime) maps smoothed RSSI to a position fix, ``ParticleFilter``
keeps each cart's track smooth, within walking speed and out of walls, ``Positioner``
ties them together per cart. Training lives in ``models/positioning``.

The names below are imported on first use (PEP 562): numpy and onnxruntime cost about
half a second, and ``storefleet positioning --help`` (this package's ``cli``) must not
pay it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_agent.inference.positioning.errors import (
        ModelError,
        PositioningError,
        SurveyError,
    )
    from edge_agent.inference.positioning.filter import FilterParams, ParticleFilter
    from edge_agent.inference.positioning.layout import FloorPlan, Zone
    from edge_agent.inference.positioning.model import PositionModel
    from edge_agent.inference.positioning.pipeline import (
        Positioner,
        PositionUpdate,
        ScanReport,
    )

_EXPORTS = {
    "ModelError": "errors",
    "PositioningError": "errors",
    "SurveyError": "errors",
    "FilterParams": "filter",
    "ParticleFilter": "filter",
    "FloorPlan": "layout",
    "Zone": "layout",
    "PositionModel": "model",
    "Positioner": "pipeline",
    "PositionUpdate": "pipeline",
    "ScanReport": "pipeline",
}

__all__ = [
    "FilterParams",
    "FloorPlan",
    "ModelError",
    "ParticleFilter",
    "PositionModel",
    "PositionUpdate",
    "Positioner",
    "PositioningError",
    "ScanReport",
    "SurveyError",
    "Zone",
]


def __getattr__(name: str) -> Any:
    submodule = _EXPORTS.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{submodule}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
