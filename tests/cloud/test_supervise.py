"""The API process's background tasks run supervised (cloud.supervise, decision 0031):
a crashed in-process ingest task is logged, counted and restarted, and /healthz says so
(issue 13, failure 4: it ended for good while /healthz kept answering ok)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.main import create_app
from cloud.publish import MemoryPublisher
from cloud.supervise import TaskSupervisor
from protocols import encode, topics
from protocols.backoff import Backoff
from protocols.messages import Birth
from tests.cloud.api.test_auth_and_errors import assert_problem
from tests.cloud.conftest import ADMIN, api_client, auth, make_settings, metric, publish
from tests.services import Mosquitto


class _OverflowedBackoff:
    """The reconnect backoff as cloud/backoff.py computed it before decision 0031, once
    1,100 reconnects had failed (about six hours of broker outage at a 30 s cap)."""

    def next(self) -> float:
        return min(30.0, 0.2 * 2.0**1100)  # OverflowError, as it was

    def reset(self) -> None:
        pass


async def _until(check: Callable[[], Awaitable[bool]], what: str, *,
                 within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.mark.mosquitto
async def test_a_crashed_ingest_task_shows_in_healthz_and_comes_back(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'cloud.db'}", mosquitto.url)
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry, ingest=True, publisher=MemoryPublisher(),
                     # restarts a second apart, so the test sees the task down
                     task_backoff=lambda: Backoff(min_s=1.0, max_s=1.0))
    async with api_client(app) as c:
        worker = app.state.ingest
        await asyncio.wait_for(worker.connected.wait(), 15)
        r = await c.get("/healthz")
        assert r.status_code == 200
        assert r.json()["tasks"]["ingest"] == {"state": "running", "restarts": 0}

        # The broker goes away; the reconnect backoff raises what the old one raised.
        # (The worker's reconnect loop is its AckSubscriber's, storefleet/mqtt/subscriber.py.)
        worker._subscriber._backoff = _OverflowedBackoff()
        await asyncio.to_thread(mosquitto.restart)
        last: list[httpx.Response] = []

        async def down() -> bool:
            last[:] = [await c.get("/healthz")]
            return last[0].status_code == 503

        await _until(down, "healthz to report the crashed ingest task")
        problem = assert_problem(last[0], 503)
        assert "task ingest crashed" in problem["detail"] and "OverflowError" in problem["detail"]
        assert metric(registry, "storefleet_task_restarts_total", task="ingest") >= 1
        assert any(r.levelno == logging.ERROR and "task ingest crashed" in r.getMessage()
                   and r.exc_info for r in caplog.records)

        # It is started again and takes messages as before.
        worker._subscriber._backoff = Backoff(min_s=0.05, max_s=0.5)

        async def up() -> bool:
            return (await c.get("/healthz")).status_code == 200 and worker.connected.is_set()

        await _until(up, "the ingest task to come back")
        ingest = (await c.get("/healthz")).json()["tasks"]["ingest"]
        assert ingest["state"] == "running" and ingest["restarts"] >= 1
        assert "OverflowError" in ingest["last_error"]
        await publish(mosquitto.url, [(topics.state("s-back"),
                                       encode(Birth(bd_seq=1, ts=1, agent_version="1")))])

        async def stored() -> bool:
            r = await c.get("/api/v1/stores/s-back", headers=auth(ADMIN))
            return r.status_code == 200

        await _until(stored, "a birth stored by the restarted ingest")
    assert app.state.tasks.states["ingest"].state == "stopped"


async def test_a_task_that_ends_by_itself_is_restarted_and_stops_on_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    tasks = TaskSupervisor(registry, backoff=lambda: Backoff(min_s=0.0, max_s=0.01))
    stop = asyncio.Event()
    runs: list[int] = []

    async def run() -> None:
        runs.append(1)
        if len(runs) == 1:
            return  # ended without being stopped
        if len(runs) == 2:
            raise RuntimeError("boom")
        await stop.wait()

    task = tasks.start("jobs", run, stop=stop)

    async def third_run() -> bool:
        return len(runs) == 3

    await _until(third_run, "the third run")
    state = tasks.states["jobs"]
    assert (state.state, state.restarts, state.last_error) == ("running", 2, "RuntimeError: boom")
    assert metric(registry, "storefleet_task_restarts_total", task="jobs") == 2
    stop.set()
    await asyncio.wait_for(task, 5)
    assert state.state == "stopped"
