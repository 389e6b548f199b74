"""The rollout test fleet (decision 0040): real Mosquitto (one cloud broker, and each
box's own local bus), the real cloud served by uvicorn (API, MQTT publisher, in-process
ingest with its post-commit hooks), and real agents with the ``updates`` module, each
driving a vending cabinet simulator (decision 0039) on its own pty.

    async with fleet(tmp_path, mosquitto_factory, 3) as f:
        sha = await f.upload(image, "2.0.0")
        rollout = await f.create(sha, f.stores, canary_size=1, wave_size=2)
        await f.until(rollout["id"], "completed")

Used by tests/integration/test_rollouts.py and test_rollout_fleet.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from cloud.db.models import Command
from cloud.main import create_app
from cloud.promotions.signing import SnapshotSigner
from edge_agent.app import Agent
from edge_agent.cartscreen.server import EmbeddedServer
from firmware_sim.vending import VendingCabinetSim, VendingFaults, start_vending_sim
from tests.cloud.conftest import ADMIN, DEVICE, auth, make_settings
from tests.edge_agent.helpers import make_config, running_agent, wait_until
from tests.services import Mosquitto, free_port

TARGET = "firmware:vending/cab-8"


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
async def fleet(tmp_path: Path, brokers: Callable[[], Mosquitto], n: int, *,
                updates: dict[str, Any] | None = None,
                modules: Mapping[str, Any] | None = None,
                faults: Mapping[int, VendingFaults] | None = None,
                cabinet_options: Mapping[str, Any] | None = None,
                content_signer: SnapshotSigner | None = None,
                devices: Sequence[Mapping[str, Any]] = (),
                till: bool = False) -> AsyncIterator[Fleet]:
    """``n`` boxes with a vending cabinet each; ``updates`` adds to their updates module's
    settings; ``faults``: box index -> the faults of its cabinet; ``modules``: the
    other modules each box runs (section -> settings); ``cabinet_options``: every
    box's vending driver options (over the quick polling below); ``content_signer``: the
    cloud's signing key (content manifests, price books); given, every box also runs
    the ``content`` module (decision 0046) trusting it and the release key; ``devices``:
    more devices on every box (beside its cabinet); ``till``: the till follows the
    cloud's price books (signed by ``content_signer``)."""
    broker = brokers()
    signer = SnapshotSigner.generate()
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'cloud.db'}", broker.url,
                                   artifact_dir=str(tmp_path / "blobs"),
                                   rollout_interval_s=0.2),
                     registry=CollectorRegistry(), release=signer, signer=content_signer,
                     ingest=True)
    port = free_port()
    server = EmbeddedServer(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(), name="rollout-test-api")
    key = signer.public_keys()[0]["public_key"]
    url = f"http://127.0.0.1:{port}"
    content = {} if content_signer is None else {"content": {
        "cloud_api": url, "cloud_api_token": DEVICE, "release_keys": [key], "retry_s": 0.2,
        "trusted_keys": [content_signer.public_keys()[0]["public_key"]]}}
    if till and content_signer is not None:
        content["till"] = {"cloud_api": url, "cloud_api_token": DEVICE,
                           "trusted_keys": [content_signer.public_keys()[0]["public_key"]]}
    sims = [await start_vending_sim(faults=(faults or {}).get(i)) for i in range(n)]
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        async with contextlib.AsyncExitStack() as stack:
            configs = [make_config(
                tmp_path / f"box{i}", uplink=broker, local=brokers(),
                devices=[{"id": "vend-1", "family": "vending", "options": {
                    "port": cabinet.port.path, "poll_interval_s": 0.01,
                    "reply_timeout_s": 0.1, **(cabinet_options or {})}}, *devices],
                modules={**(modules or {}), **content, "updates": {
                    "cloud_api": url, "cloud_api_token": DEVICE,
                    "trusted_keys": [key], **(updates or {})}})
                for i, (cabinet, _) in enumerate(sims)]
            # Started together: one by one, 20 boxes spent 12 s waiting on connects.
            agents = list(await asyncio.gather(*(
                stack.enter_async_context(running_agent(cfg)) for cfg in configs)))
            # the cloud shares this loop with the agents and their simulators: on a busy
            # CI box (two test workers) an upload can take longer than httpx's 5 s default
            http = await stack.enter_async_context(httpx.AsyncClient(base_url=url,
                                                                     timeout=30))

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
