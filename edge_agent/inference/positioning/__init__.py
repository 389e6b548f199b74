"""Indoor positioning of carts on the store box: BLE scan reports -> (x, y, zone).

``PositionModel`` (onnxruntime) maps smoothed RSSI to a position fix, ``ParticleFilter``
keeps each cart's track smooth, within walking speed and out of walls, ``Positioner``
ties them together per cart. Training lives in ``models/positioning``.
"""

from edge_agent.inference.positioning.errors import ModelError, PositioningError, SurveyError
from edge_agent.inference.positioning.filter import FilterParams, ParticleFilter
from edge_agent.inference.positioning.layout import FloorPlan, Zone
from edge_agent.inference.positioning.model import PositionModel
from edge_agent.inference.positioning.pipeline import Positioner, PositionUpdate, ScanReport

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
