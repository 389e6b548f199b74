"""E-shelf labels: the access-point driver and its pure label bookkeeping."""

from edge_agent.drivers.esl.driver import STALE_ALARM, EslDriver
from edge_agent.drivers.esl.labels import AckResult, LabelBook

__all__ = ["STALE_ALARM", "AckResult", "EslDriver", "LabelBook"]
