"""BLE beacons: a scanner driver (``family = "beacon"``) and its scan backends."""

from edge_agent.drivers.beacon.driver import BeaconDriver
from edge_agent.drivers.beacon.inventory import BeaconInventory, BeaconState
from edge_agent.drivers.beacon.transport import (
    Backend,
    BeaconScanner,
    BleakBackend,
    RawAdvertisement,
    ReplayBackend,
    ScanBackend,
    ScannerError,
)

__all__ = [
    "Backend",
    "BeaconDriver",
    "BeaconInventory",
    "BeaconScanner",
    "BeaconState",
    "BleakBackend",
    "RawAdvertisement",
    "ReplayBackend",
    "ScanBackend",
    "ScannerError",
]
