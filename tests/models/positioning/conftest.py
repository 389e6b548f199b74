"""The calib2021 dataset fixture (defined once, with the positioning runtime tests)."""

from tests.edge_agent.inference.positioning.conftest import calib2021

__all__ = ["calib2021"]
