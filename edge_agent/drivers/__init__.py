"""Device drivers: one sub-package per device family, each with the same files.

    drivers/<family>/
        __init__.py     registers the driver class in ``DRIVERS``
        driver.py       the ``Driver`` subclass: glue between transport, codec and agent
        transport.py    how bytes reach the device (pyserial, TCP, local MQTT, BLE backend)

Wire protocols (frame codecs, advertisement parsers, ESC/POS) live in ``protocols/``,
not here. ``base.py`` holds the small interface every driver implements;
``supervisor.py`` runs drivers as supervised tasks with restart and backoff;
``context.py`` is the agent's side of ``DriverContext``.

Importing this package imports every family listed in ``FAMILY_PACKAGES`` so that
``DRIVERS`` is complete. The import is guarded: a family package that is not there
(not installed, or not written yet) is skipped; one that fails to import for another
reason is logged and skipped, so one broken family never takes the agent down.
Adding a family = adding its package name here.
"""

import importlib
import logging

from edge_agent.drivers.base import (
    DRIVERS,
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverContext,
    DriverError,
    register,
)

logger = logging.getLogger(__name__)

FAMILY_PACKAGES: tuple[str, ...] = (
    "beacon",
    "cart",
    "esl",
    "audio",
    "vending",
    "printer",
    "scanner",
    "drawer",
    "display",
    "pos",
)

LOADED_FAMILIES: list[str] = []  # package names that imported (diagnostics, tests)


def _load_families() -> None:
    for name in FAMILY_PACKAGES:
        module = f"{__name__}.{name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is not None and module.startswith(err.name):
                logger.debug("driver family %s not present", name)
                continue
            logger.error("driver family %s failed to import: %s", name, err)
            continue
        except Exception as err:  # isolation: one broken family must not hide the others
            logger.error("driver family %s failed to import: %s", name, err)
            continue
        LOADED_FAMILIES.append(name)


_load_families()

__all__ = [
    "DRIVERS",
    "FAMILY_PACKAGES",
    "LOADED_FAMILIES",
    "DeviceConfig",
    "DeviceHealth",
    "Driver",
    "DriverContext",
    "DriverError",
    "register",
]
