"""Device drivers: one sub-package per device family, each with the same files.

    drivers/<family>/
        __init__.py     imports the driver (its ``@register`` makes the family known)
        driver.py       the ``Driver`` subclass: options model, commands, capabilities;
                        glue between link, codec and agent
        transport.py    when the family has its own: how requests and replies pair up

Wire protocols (frame codecs, advertisement parsers, ESC/POS) live in ``protocols/``,
not here. ``base.py`` holds the small contract every driver implements (decision
0033); ``capabilities.py`` the typed protocols the agent finds drivers by; ``links.py``
the serial and TCP links and the flood guard every family shares; ``supervisor.py``
runs drivers as supervised tasks with restart and backoff; ``context.py`` is the
agent's side of ``DriverContext``; ``testing.py`` its in-package fake.

Families are discovered, not listed: importing this package imports every
sub-package of this folder, so adding a family is adding its folder. A family that
fails to import is logged and skipped, so one broken family never takes the agent
down (its devices are then refused as ``unknown_family``).
"""

import importlib
import logging
import pkgutil

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

FAMILY_PACKAGES: tuple[str, ...] = tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)
)

LOADED_FAMILIES: list[str] = []  # package names that imported (diagnostics, tests)


def _load_families() -> None:
    for name in FAMILY_PACKAGES:
        try:
            importlib.import_module(f"{__name__}.{name}")
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
