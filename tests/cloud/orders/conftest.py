"""Fixtures for order tests: the real cloud app (SQLite file or PostgreSQL) with an
in-package ``MemoryPublisher`` standing in for the broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.main import create_app
from cloud.publish import MemoryPublisher
from protocols.clock import ManualClock
from tests.cloud.conftest import api_client, make_settings


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
async def client(db_url: str, publisher: MemoryPublisher, clock: ManualClock,
                 registry: CollectorRegistry) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(db_url), registry=registry, publisher=publisher, clock=clock)
    async with api_client(app) as c:
        c.app = app  # type: ignore[attr-defined]
        yield c
