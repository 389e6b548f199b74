"""Smart-cart tablets: a shopper walking a store layout (``walker``), a cart on the
store-local bus (``sim``)."""

from firmware_sim.cart.sim import CartSimulator
from firmware_sim.cart.walker import Walker

__all__ = ["CartSimulator", "Walker"]
