"""Customer line displays (2 x 20 VFD, ESC/POS display commands over serial)."""

from edge_agent.drivers.display.driver import DisplayDriver

__all__ = ["DisplayDriver"]
