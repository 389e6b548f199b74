"""Device drivers: one sub-package per device family, each with the same files.

    drivers/<family>/
        __init__.py     registers the driver class in ``DRIVERS``
        driver.py       the ``Driver`` subclass: glue between transport, codec and agent
        transport.py    how bytes reach the device (pyserial, TCP, local MQTT, BLE backend)

Wire protocols (frame codecs, advertisement parsers, ESC/POS) live in ``protocols/``,
not here. ``base.py`` holds the small interface every driver implements;
``supervisor.py`` runs drivers as supervised tasks with restart and backoff.
"""

from edge_agent.drivers.base import (
    DRIVERS,
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverContext,
    DriverError,
    register,
)

__all__ = [
    "DRIVERS",
    "DeviceConfig",
    "DeviceHealth",
    "Driver",
    "DriverContext",
    "DriverError",
    "register",
]
