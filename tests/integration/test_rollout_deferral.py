"""Busy deferral end to end (decision 0043): a firmware rollout reaches a vending
cabinet whose customer is mid-session; the box reports ``deferred`` once, retries while
the vend session is open, and installs when it ends; a session that outlasts the
offer's deadline fails the install with the busy reason. Real Mosquitto, the cloud under
uvicorn, a real agent and the cabinet simulator on a pty (``rollout_fleet.fleet``)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from cloud.db.models import Event
from protocols import vending as v
from tests.edge_agent.helpers import metric, wait_until
from tests.integration.rollout_fleet import fleet, until_true
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

GOOD = v.firmware_image(random.Random(4).randbytes(2000))
GOOD2 = v.firmware_image(random.Random(5).randbytes(2000))
# Retry fast here; production retries from 1 s up to 30 s.
FAST_RETRY = {"busy_retry_min_s": 0.05, "busy_retry_max_s": 0.2}


async def test_a_cabinet_mid_vend_defers_the_firmware_until_the_vend_ends(
    tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]
) -> None:
    async with fleet(tmp_path, mosquitto_factory, 1, updates=FAST_RETRY) as f:
        agent, cabinet = f.agents[0], f.cabinets[0]
        cabinet.tap(500)  # a card tapped: the customer is still choosing
        await wait_until(lambda: agent.drivers.health()["vend-1"]["session"] == "session",
                         what="vend session open")
        sha = await f.upload(GOOD, "2.0.0")
        created = await f.create(sha, f.stores)
        rollout_id = created["id"]

        async def deferred() -> bool:
            return bool((await f.get(rollout_id))["targets"][0]["state"] == "deferred")

        await until_true(deferred, what="target deferred")
        await asyncio.sleep(0.5)  # several busy retries while the customer chooses
        now = await f.get(rollout_id)
        assert now["state"] == "running" and now["deferred"] == 1
        assert now["targets"][0]["detail"] == "a vend session is in progress (session)"
        assert cabinet.firmware_version == "1.0.0"  # nothing was sent to the board

        cabinet.cancel()  # the customer walks off: the session ends
        done = await f.until(rollout_id, "completed")
        assert done["targets"][0]["state"] == "succeeded"
        assert cabinet.firmware_version == "2.0.0"
        assert metric(agent, "storefleet_rollout_installs_total", result="deferred") == 1
        assert metric(agent, "storefleet_rollout_installs_total", result="succeeded") == 1
        with f.app.state.cloud.reader() as session:
            steps = [e.data["step"] for e in session.scalars(
                select(Event).where(Event.kind == "rollout_status").order_by(Event.seq))]
        # one deferred report for the whole busy spell, however many retries it took
        assert steps == ["fetching", "fetched", "deferred", "installing", "succeeded"]

        # a customer who never leaves: the box gives up at the offer's deadline
        await cabinet.wait_idle()
        cabinet.tap(500)
        await wait_until(lambda: agent.drivers.health()["vend-1"]["session"] == "session",
                         what="vend session open again")
        second = await f.create(await f.upload(GOOD2, "3.0.0"), f.stores, deadline_s=2)
        await f.until(second["id"], "halted")

        def failed_reports() -> list[str]:
            with f.app.state.cloud.reader() as session:
                return [e.data["detail"] for e in session.scalars(select(Event).where(
                    Event.kind == "rollout_status")) if e.data["rollout_id"] == second["id"]
                    and e.data["step"] == "failed"]

        await wait_until(failed_reports, what="the box's busy failure reported")
        assert failed_reports() == ["busy: a vend session is in progress (session)"]
        assert metric(agent, "storefleet_rollout_installs_total",
                      result="busy_past_deadline") == 1
        assert cabinet.firmware_version == "2.0.0"  # the board was never touched


async def test_a_vend_that_begins_as_the_install_starts_defers_it_instead_of_failing(
    tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]
) -> None:
    """The race a busy store hits: the box checked the cabinet free, then the reader's
    poll opened a customer's session before FW_START, and the board answers BUSY.
    Nothing was changed, so the install waits for the vend to end instead of failing
    the rollout. The board's session is opened behind the driver's back here (the
    driver polls seldom), so every FW_START meets it until the customer leaves."""
    async with fleet(tmp_path, mosquitto_factory, 1, updates=FAST_RETRY,
                     cabinet_options={"poll_interval_s": 30.0}) as f:
        agent, cabinet = f.agents[0], f.cabinets[0]
        cabinet.session_open = True  # as the board's POLL reply to a tap leaves it
        assert agent.drivers.health()["vend-1"]["session"] == "idle"  # as the box sees it
        created = await f.create(await f.upload(GOOD, "2.0.0"), f.stores)
        await wait_until(lambda: metric(agent, "storefleet_rollout_installs_total",
                                        result="busy_at_install") >= 2,
                         what="the board refused FW_START as busy, twice")
        assert (await f.get(created["id"]))["state"] == "running"  # not failed, not halted
        assert cabinet.firmware_version == "1.0.0"
        cabinet.session_open = False  # the customer walks off
        done = await f.until(created["id"], "completed")
        assert done["targets"][0]["state"] == "succeeded"
        assert cabinet.firmware_version == "2.0.0"
        assert metric(agent, "storefleet_rollout_installs_total", result="failed") == 0
