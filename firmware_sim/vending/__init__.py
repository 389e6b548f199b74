"""Simulated vending cabinet on a pseudo-terminal (lock board + cashless reader), and
the customers who buy at it."""

from firmware_sim.vending.customers import MEMBER_CARDS, CabinetCustomers, is_member_card
from firmware_sim.vending.sim import VendingCabinetSim, VendingFaults, start_vending_sim

__all__ = ["MEMBER_CARDS", "CabinetCustomers", "VendingCabinetSim", "VendingFaults",
           "is_member_card", "start_vending_sim"]
