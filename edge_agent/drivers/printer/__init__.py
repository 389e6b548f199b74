"""ESC/POS receipt printers on TCP 9100 or serial, with the cash drawer on their DK port."""

from edge_agent.drivers.printer.driver import PrinterDriver, PrinterUnavailable

__all__ = ["PrinterDriver", "PrinterUnavailable"]
