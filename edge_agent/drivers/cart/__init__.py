"""Smart carts on the store-local bus: one driver (``family = "cart"``) for all carts."""

from edge_agent.drivers.cart.driver import (
    CartDriver,
    CartError,
    ScanReport,
    ScanSubscription,
    ScreenResult,
    ScreenTimeout,
)
from edge_agent.drivers.cart.state import Cart, Session

__all__ = [
    "Cart",
    "CartDriver",
    "CartError",
    "ScanReport",
    "ScanSubscription",
    "ScreenResult",
    "ScreenTimeout",
    "Session",
]
