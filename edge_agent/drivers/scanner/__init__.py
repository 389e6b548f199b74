"""Serial barcode scanners (AIM symbology identifier + CR framing)."""

from edge_agent.drivers.scanner.driver import ScannerDriver

__all__ = ["ScannerDriver"]
