"""Vending cabinets: lock board + cashless reader over serial (``protocols.vending``)."""

from edge_agent.drivers.vending.driver import VendingDriver

__all__ = ["VendingDriver"]
