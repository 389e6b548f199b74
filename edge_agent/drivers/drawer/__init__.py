"""Cash drawer: wired to the receipt printer's drawer kick-out (DK) port, so it is
kicked with ESC p through the printer and read through the printer's status
(DLE EOT 1, bit 2). It is a component of ``PrinterDriver`` (``options.drawer``), not a
driver of its own: there is no second wire to a drawer."""

from edge_agent.drivers.drawer.drawer import CashDrawer, DrawerTransition

__all__ = ["CashDrawer", "DrawerTransition"]
