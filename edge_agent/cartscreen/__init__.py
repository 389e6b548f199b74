"""The cart-screen web app served by the store box to cart tablets (``/cart/{cart_id}``),
and ``InAisle``, which runs it together with the coupon triggers inside the agent."""

from edge_agent.cartscreen.backend import CartScreenBackend, ScreenError
from edge_agent.cartscreen.hub import ScreenHub
from edge_agent.cartscreen.runtime import SAMPLE_DATA, InAisle, InAisleSettings, check_rules
from edge_agent.cartscreen.server import CartScreenError, CartScreenServer
from edge_agent.cartscreen.web import create_app

__all__ = [
    "SAMPLE_DATA",
    "CartScreenBackend",
    "CartScreenError",
    "CartScreenServer",
    "InAisle",
    "InAisleSettings",
    "ScreenError",
    "ScreenHub",
    "check_rules",
    "create_app",
]
