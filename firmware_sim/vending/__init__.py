"""Simulated vending cabinet on a pseudo-terminal (lock board + cashless reader)."""

from firmware_sim.vending.sim import VendingCabinetSim, VendingFaults, start_vending_sim

__all__ = ["VendingCabinetSim", "VendingFaults", "start_vending_sim"]
