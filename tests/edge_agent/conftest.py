"""Fixtures for the edge agent tests: an uplink and a local broker, an agent factory.

``mosquitto_factory`` comes from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.services import Mosquitto


@pytest.fixture
def uplink_broker(mosquitto_factory: Callable[[], Mosquitto]) -> Mosquitto:
    """The cloud side of the uplink."""
    return mosquitto_factory()


@pytest.fixture
def local_broker(mosquitto_factory: Callable[[], Mosquitto]) -> Mosquitto:
    """The store-local bus."""
    return mosquitto_factory()
