"""Rollouts end to end (decision 0040) on real Mosquitto, the real cloud served by
uvicorn (API, MQTT publisher, in-process ingest with its post-commit hooks), real
agents with the ``updates`` module and the vending cabinet simulator of decision 0039:
a good firmware completes wave by wave; a signed image the board refuses halts the
rollout at the failure threshold and the failed (store, device, artifact) is never
offered again; pause holds back the next wave, resume offers it, abort ends it."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from cloud.db.models import Command
from cloud.main import create_app
from cloud.promotions.signing import SnapshotSigner
from edge_agent.app import Agent
from edge_agent.cartscreen.server import EmbeddedServer
from firmware_sim.vending import VendingCabinetSim, start_vending_sim
from protocols import vending as v
from tests.cloud.conftest import ADMIN, DEVICE, auth, make_settings
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until
from tests.services import Mosquitto, free_port

pytestmark = pytest.mark.mosquitto

TARGET = "firmware:vending/cab-8"
GOOD = v.firmware_image(random.Random(1).randbytes(2000))
GOOD2 = v.firmware_image(random.Random(2).randbytes(2000))
BAD = random.Random(3).randbytes(2000)  # signed by the cloud, but no valid CRC trailer


async def until_true(cond: Callable[[], Awaitable[bool]], *, what: str,
                     within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def board_version(agent: Agent) -> bool:
    return agent.drivers.health().get("vend-1", {}).get("firmware_version") == "1.0.0"


@dataclass
class Fleet:
    http: httpx.AsyncClient
    app: Any
    agents: list[Agent]
    cabinets: list[VendingCabinetSim]

    @property
    def stores(self) -> list[str]:
        return [a.config.store_id for a in self.agents]

    async def upload(self, body: bytes, version: str) -> str:
        r = await self.http.post("/api/v1/artifacts", content=body, headers=auth(ADMIN),
                                 params={"kind": "firmware", "target": TARGET,
                                         "version": version})
        assert r.status_code == 201, r.text
        return str(r.json()["payload"]["sha256"])

    async def create(self, sha: str, stores: list[str], **plan: Any) -> dict[str, Any]:
        r = await self.http.post("/api/v1/rollouts", headers=auth(ADMIN), json={
            "sha256": sha, "device": "vend-1", "stores": stores, **plan})
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def get(self, rollout_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/api/v1/rollouts/{rollout_id}", headers=auth(ADMIN))
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def until(self, rollout_id: str, state: str) -> dict[str, Any]:
        got: dict[str, Any] = {}

        async def reached() -> bool:
            got.update(await self.get(rollout_id))
            return got["state"] == state

        await until_true(reached, what=f"rollout {state}")
        return got

    def offers(self, rollout_id: str) -> list[tuple[str, int]]:
        """(store, created_ms) of every install_artifact command of a rollout."""
        with self.app.state.cloud.reader() as session:
            rows = session.scalars(select(Command).where(Command.name == "install_artifact")
                                   .order_by(Command.created_ms)).all()
            return [(c.store_id, c.created_ms) for c in rows
                    if c.args["rollout_id"] == rollout_id]


@contextlib.asynccontextmanager
async def fleet(tmp_path: Path, brokers: Callable[[], Mosquitto], n: int
                ) -> AsyncIterator[Fleet]:
    broker = brokers()
    signer = SnapshotSigner.generate()
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'cloud.db'}", broker.url,
                                   artifact_dir=str(tmp_path / "blobs"),
                                   rollout_interval_s=0.2),
                     registry=CollectorRegistry(), release=signer, ingest=True)
    port = free_port()
    server = EmbeddedServer(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(), name="rollout-test-api")
    key = signer.public_keys()[0]["public_key"]
    url = f"http://127.0.0.1:{port}"
    sims = [await start_vending_sim() for _ in range(n)]
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        async with contextlib.AsyncExitStack() as stack:
            agents = []
            for i, (cabinet, _) in enumerate(sims):
                cfg = make_config(tmp_path / f"box{i}", uplink=broker, local=brokers(),
                                  devices=[{"id": "vend-1", "family": "vending", "options": {
                                      "port": cabinet.port.path, "poll_interval_s": 0.01,
                                      "reply_timeout_s": 0.1}}],
                                  modules={"updates": {"cloud_api": url,
                                                       "cloud_api_token": DEVICE,
                                                       "trusted_keys": [key]}})
                agents.append(await stack.enter_async_context(running_agent(cfg)))
            http = await stack.enter_async_context(httpx.AsyncClient(base_url=url))

            async def all_born() -> bool:
                r = await http.get("/api/v1/stores", headers=auth(ADMIN))
                return {s["store_id"] for s in r.json()} >= {a.config.store_id for a in agents}

            await until_true(all_born, what="stores born")
            for agent in agents:
                await wait_until(partial(board_version, agent), what="board version read")
            yield Fleet(http=http, app=app, agents=agents, cabinets=[c for c, _ in sims])
    finally:
        for cabinet, sim_task in sims:
            sim_task.cancel()
            await asyncio.gather(sim_task, return_exceptions=True)
            cabinet.port.close()
        server.should_exit = True
        await asyncio.wait_for(task, 30)


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
