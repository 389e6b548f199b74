"""Helpers for the cloud tests; ``mosquitto`` and ``db_url`` come from tests/conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import aiomqtt
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from cloud.ingest import IngestWorker
from cloud.settings import CloudSettings
from protocols.backoff import Backoff

ADMIN = "test-admin-token-0001"
TECH = "test-tech-token-00001"
MANAGER = "test-manager-token-01"
DEVICE = "test-device-token-001"
# Store-scoped tokens (decision 0015); MANAGER and DEVICE above are legacy chain-wide ones.
MANAGER_S1 = "test-manager-s1-token-1"
DEVICE_S1 = "test-device-s1-token-01"
TECH_NORTH = "test-tech-north-token-1"
TOKENS: dict[str, Any] = {
    ADMIN: "hq-admin", TECH: "field-tech", MANAGER: "store-manager", DEVICE: "device",
    MANAGER_S1: {"role": "store-manager", "stores": ["s1"]},
    DEVICE_S1: {"role": "device", "stores": ["s1"]},
    TECH_NORTH: {"role": "field-tech", "regions": ["north"]},
}

_ids = itertools.count()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_settings(db_url: str, mqtt_url: str = "mqtt://127.0.0.1:1", **kw: Any) -> CloudSettings:
    return CloudSettings(
        database_url=db_url,
        mqtt_url=mqtt_url,
        api_tokens=TOKENS,
        ingest_client_id=kw.pop("ingest_client_id", f"ingest-test-{next(_ids)}"),
        scheduler_interval_s=kw.pop("scheduler_interval_s", 0),  # jobs run when a test asks
        rollout_interval_s=kw.pop("rollout_interval_s", 0),  # likewise the rollout ticks
        # MANAGER and DEVICE are unscoped on purpose: the chain-wide migration mode
        require_token_scope=kw.pop("require_token_scope", False),
        **kw,
    )


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def wait_until(check: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    """Poll ``check`` (sync) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting; last value {value!r}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(worker: IngestWorker) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``worker`` until the block ends; yields its task (cancel it to 'crash' it)."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop), name="test-ingest")
    try:
        await asyncio.wait_for(worker.connected.wait(), 15)
        yield task
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 15)
        elif not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def make_worker(settings: CloudSettings, registry: CollectorRegistry | None = None,
                **kw: Any) -> IngestWorker:
    # Fast reconnects: tests restart brokers and fail databases on purpose.
    kw.setdefault("backoff", Backoff(min_s=0.05, max_s=0.5))
    return IngestWorker(settings, registry=registry or CollectorRegistry(), **kw)


async def publish(url: str, messages: Iterable[tuple[str, bytes | str]], *, qos: int = 1,
                  retain: bool = False) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=qos, retain=retain)


@contextlib.asynccontextmanager
async def api_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app, with its lifespan (migrations, ingest) running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as client:
            yield client


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()
