"""Rollouts end to end (decision 0040) on real Mosquitto, the real cloud served by
uvicorn (API, MQTT publisher, in-process ingest with its post-commit hooks), real
agents with the ``updates`` module and the vending cabinet simulator of decision 0039:
a good firmware completes wave by wave; a signed image the board refuses halts the
rollout at the failure threshold and the failed (store, device, artifact) is never
offered again; pause holds back the next wave, resume offers it, abort ends it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from protocols import vending as v
from tests.cloud.conftest import ADMIN, auth
from tests.edge_agent.helpers import metric, wait_until
from tests.integration.rollout_fleet import fleet, until_true
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

GOOD = v.firmware_image(random.Random(1).randbytes(2000))
GOOD2 = v.firmware_image(random.Random(2).randbytes(2000))
BAD = random.Random(3).randbytes(2000)  # signed by the cloud, but no valid CRC trailer


async def test_good_firmware_completes_wave_by_wave(
    tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]
) -> None:
    async with fleet(tmp_path, mosquitto_factory, 3) as f:
        sha = await f.upload(GOOD, "2.0.0")
        created = await f.create(sha, f.stores, canary_size=1, wave_size=2)
        assert [w["size"] for w in created["waves"]] == [1, 2]
        done = await f.until(created["id"], "completed")
        assert all(t["state"] == "succeeded" for t in done["targets"])
        assert [c.firmware_version for c in f.cabinets] == ["2.0.0"] * 3
        assert [metric(a, "storefleet_rollout_installs_total", result="succeeded")
                for a in f.agents] == [1, 1, 1]
        offers = f.offers(created["id"])
        assert offers[0][0] == f.stores[0] and len(offers) == 3
        # the canary's success came first: the second wave was offered after it
        assert offers[0][1] < offers[1][1] == offers[2][1]

        # and the cloud's device registry (what `fleet devices` shows) has the new firmware
        async def registry_updated() -> bool:
            r = await f.http.get("/api/v1/devices", headers=auth(ADMIN),
                                 params={"device_id": "vend-1"})
            return sorted(d["fw"] or "" for d in r.json()) == ["2.0.0"] * 3

        await until_true(registry_updated, what="firmware 2.0.0 in the device registry")


async def test_refused_image_halts_is_never_offered_again_and_pause_resume_abort(
    tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]
) -> None:
    async with fleet(tmp_path, mosquitto_factory, 2) as f:
        s1, s2 = f.stores
        bad = await f.upload(BAD, "6.6.6")
        first = await f.create(bad, [s1, s2], canary_size=1, wave_size=1)
        halted = await f.until(first["id"], "halted")
        states = {t["store_id"]: t["state"] for t in halted["targets"]}
        assert states == {s1: "failed", s2: "waiting"}  # the halt kept s2 from it
        assert [s for s, _ in f.offers(first["id"])] == [s1]
        assert f.cabinets[0].firmware_version == "1.0.0"
        assert metric(f.agents[0], "storefleet_rollout_installs_total", result="failed") == 1
        # the failed pair is skipped by a later rollout; the other store gets the offer
        again = await f.create(bad, [s1, s2], canary_size=1, wave_size=1)
        halted = await f.until(again["id"], "halted")  # s2's board refuses it too
        assert {t["store_id"]: t["state"] for t in halted["targets"]} == {
            s1: "skipped", s2: "failed"}
        assert [s for s, _ in f.offers(again["id"])] == [s2]
        r = await f.http.post(f"/api/v1/rollouts/{first['id']}/abort", headers=auth(ADMIN))
        assert r.status_code == 200 and r.json()["state"] == "aborted"
        r = await f.http.post(f"/api/v1/rollouts/{first['id']}/resume", headers=auth(ADMIN))
        assert r.status_code == 409, r.text

        # pause: reports still count, the next wave waits; resume offers it
        good = await f.upload(GOOD2, "3.0.0")
        third = await f.create(good, [s1, s2], canary_size=1, wave_size=1)
        r = await f.http.post(f"/api/v1/rollouts/{third['id']}/pause", headers=auth(ADMIN))
        assert r.status_code == 200 and r.json()["state"] == "paused"
        await wait_until(lambda: f.cabinets[0].firmware_version == "3.0.0", what="canary")

        async def canary_counted() -> bool:
            return (await f.get(third["id"]))["targets"][0]["state"] == "succeeded"

        await until_true(canary_counted, what="canary report stored")
        await asyncio.sleep(0.6)  # three offer ticks
        assert [s for s, _ in f.offers(third["id"])] == [s1]
        r = await f.http.post(f"/api/v1/rollouts/{third['id']}/resume", headers=auth(ADMIN))
        assert r.status_code == 200
        await f.until(third["id"], "completed")
        assert [c.firmware_version for c in f.cabinets] == ["3.0.0", "3.0.0"]
        rollouts = (await f.http.get("/api/v1/rollouts", headers=auth(ADMIN))).json()
        assert [r["state"] for r in rollouts] == ["completed", "halted", "aborted"]
