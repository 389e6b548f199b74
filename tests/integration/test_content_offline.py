"""Content manifests when the cloud goes away and when the agent dies (decision 0046):
real Mosquitto, the real cloud under uvicorn with ingest (stopped and started again on
the same port, database and blob store), real agents.

- Cloud unreachable: a restarted agent runs its applied manifest from disk; the newer
  manifest retained on the broker waits for its assets, and once the cloud is back the
  store converges to it (and the status API says so).
- ``kill -9`` of a real agent process while it fetches a new manifest's assets: after
  every kill ``applied.json`` holds the old manifest or the new one, whole, with every
  asset it names in the cache; the restarted agent resumes and applies the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from cloud.main import create_app
from cloud.promotions.signing import SnapshotSigner, verify_document
from edge_agent.app import Agent
from edge_agent.cartscreen.server import EmbeddedServer
from edge_agent.modules.content import AppliedContent, Content
from tests.cloud.conftest import ADMIN, DEVICE, auth, make_settings
from tests.edge_agent.helpers import (
    agent_process as run_agent_process,
)
from tests.edge_agent.helpers import (
    make_config,
    metric,
    new_store_id,
    running_agent,
    wait_until,
)
from tests.integration.rollout_fleet import until_true
from tests.services import Mosquitto, free_port

pytestmark = [pytest.mark.mosquitto]

REPO = Path(__file__).resolve().parents[2]


class Cloud:
    """The cloud's parts that outlive one uvicorn run: its port, database, blob store
    and keys; ``serving()`` runs the API (with ingest) until the block ends."""

    def __init__(self, tmp_path: Path, broker: Mosquitto) -> None:
        self.settings = make_settings(f"sqlite:///{tmp_path / 'cloud.db'}", broker.url,
                                      artifact_dir=str(tmp_path / "blobs"))
        self.signer, self.release = SnapshotSigner.generate(), SnapshotSigner.generate()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def content_settings(self) -> dict[str, Any]:
        return {"cloud_api": self.url, "cloud_api_token": DEVICE, "retry_s": 0.2,
                "trusted_keys": [self.signer.public_keys()[0]["public_key"]],
                "release_keys": [self.release.public_keys()[0]["public_key"]]}

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(self.settings, registry=CollectorRegistry(), signer=self.signer,
                         release=self.release, ingest=True)
        server = EmbeddedServer(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                               log_level="warning", lifespan="on"))
        task = asyncio.create_task(server.serve(), name="content-test-api")
        try:
            while not server.started:
                assert not task.done(), "uvicorn did not start"
                await asyncio.sleep(0.02)
            async with httpx.AsyncClient(base_url=self.url, headers=auth(ADMIN),
                                         timeout=30) as http:
                yield http
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 30)


async def upload(http: httpx.AsyncClient, body: bytes, version: str) -> str:
    r = await http.post("/api/v1/artifacts", content=body,
                        params={"kind": "asset", "target": "content", "version": version})
    assert r.status_code == 201, r.text
    return str(r.json()["payload"]["sha256"])


async def publish(http: httpx.AsyncClient, store: str, shas: list[str], tag: str) -> None:
    r = await http.post("/api/v1/content/publish", json={
        "stores": [store], "documents": {"schedule": {"version": tag}},
        "assets": [{"sha256": s, "name": f"{tag}-{i}.wav"} for i, s in enumerate(shas)]})
    assert r.status_code == 201, r.text


def content_of(agent: Agent) -> Content:
    module = agent.module("content")
    assert isinstance(module, Content)
    return module


def applied_version(agent: Agent) -> int | None:
    applied = content_of(agent).applied
    return applied.manifest.version if applied else None


async def test_cloud_unreachable_keeps_applied_content_then_converges(
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]) -> None:
    broker = mosquitto_factory()
    cloud = Cloud(tmp_path, broker)
    cfg = make_config(tmp_path / "box", uplink=broker, local=mosquitto_factory(),
                      modules={"content": cloud.content_settings()})
    store = cfg.store_id
    async with cloud.serving() as http:
        async with running_agent(cfg) as agent:
            await publish(http, store, [await upload(http, b"v1" * 5000, "one")], "day-1")
            await wait_until(lambda: applied_version(agent) == 1, what="manifest 1 applied")
        # the agent is down; HQ publishes manifest 2 (retained on the broker), then the
        # cloud's API goes away too
        await publish(http, store, [await upload(http, b"v2" * 5000, "two")], "day-2")

    async with running_agent(cfg) as agent:
        seen: list[AppliedContent] = []
        content_of(agent).on_applied(seen.append)
        # from disk, at once: the content it ran before the restart
        assert [a.manifest.version for a in seen] == [1]
        assert seen[0].asset_path(seen[0].manifest.assets[0].sha256).read_bytes() == \
            b"v1" * 5000
        await wait_until(lambda: metric(agent, "storefleet_artifact_fetches_total",
                                        result="unavailable") >= 2,
                         what="manifest 2's asset asked for while the cloud is away")
        diagnostics = content_of(agent).diagnostics()
        assert applied_version(agent) == 1 and (
            diagnostics["applied_version"], diagnostics["pending_version"]) == (1, 2)

        async with cloud.serving() as http:
            await wait_until(lambda: applied_version(agent) == 2, within_s=20,
                             what="manifest 2 applied once the cloud is back")
            assert [a.manifest.version for a in seen] == [1, 2]
            assert seen[-1].manifest.schedule_version == "day-2"

            async def converged() -> bool:
                r = await http.get("/api/v1/content/status", params={"store_id": store})
                row = r.json()[0]
                return bool(row["state"] == "converged" and row["applied_version"] == 2)

            await until_true(converged, what="the status API shows manifest 2 applied")


def agent_process(*, store: str, cloud: Cloud, uplink: Mosquitto, local: Mosquitto,
                  data_dir: Path, log: Path) -> contextlib.AbstractContextManager[
                      subprocess.Popen[bytes]]:
    """The agent as its own process with the content module on ``cloud``."""
    conf = data_dir.parent / "agent.toml"
    content = cloud.content_settings()
    conf.write_text("[agent]\nawait_cloud_ready = false\n\n[content]\n" + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in content.items()))
    return run_agent_process(store_id=store, conf=conf, cloud_url=uplink.url,
                             local_url=local.url, data_dir=data_dir, log=log)


def applied_on_disk(data_dir: Path, cloud: Cloud) -> tuple[int, list[str]] | None:
    """(version, asset sha256s) of applied.json, verified; None before the first."""
    path = data_dir / "content" / "applied.json"
    if not path.exists():
        return None
    payload = verify_document(json.loads(path.read_text())["signed"], cloud.signer.trusted())
    return int(payload["version"]), [a["sha256"] for a in payload["assets"]]


async def test_kill9_mid_apply_leaves_old_or_new(
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]) -> None:
    uplink, local = mosquitto_factory(), mosquitto_factory()
    cloud = Cloud(tmp_path, uplink)
    store, data_dir, log = new_store_id(), tmp_path / "box" / "agent", tmp_path / "agent.log"
    data_dir.parent.mkdir(parents=True)

    def on_disk() -> tuple[int, list[str]] | None:
        return applied_on_disk(data_dir, cloud)

    def whole() -> tuple[int, list[str]]:
        applied = on_disk()
        assert applied is not None and applied[0] in (1, 2), applied
        missing = [s for s in applied[1] if not (data_dir / "content" / "cas" / s).is_file()]
        assert not missing, f"manifest {applied[0]} applied without {missing}"
        return applied

    cas = data_dir / "content" / "cas"
    async with cloud.serving() as http:
        one = await upload(http, b"one" * 1000, "one")
        # 12 MiB in 6 assets: fetching them takes long enough to be cut twice
        shas = [await upload(http, os.urandom(2 * 1024 * 1024), f"big-{i}") for i in range(6)]

        def fetched() -> int:
            """Bytes of manifest 2's assets on disk, whole or partial."""
            return sum(p.stat().st_size for p in (*(cas / s for s in shas),
                                                  *(cas / "partial").glob("*.part"))
                       if p.is_file())

        cut_mid_apply = 0
        for run in range(2):
            before = fetched()
            with agent_process(store=store, cloud=cloud, uplink=uplink, local=local,
                               data_dir=data_dir, log=log) as agent:
                if run == 0:
                    await publish(http, store, [one], "day-1")
                    await wait_until(lambda: on_disk() is not None, within_s=30,
                                     what="manifest 1 applied")
                    await publish(http, store, shas, "day-2")
                # killed as soon as this run has fetched something more
                await wait_until(lambda b=before: fetched() > b, within_s=30,  # type: ignore[misc]
                                 what="manifest 2's assets being fetched")
                agent.send_signal(signal.SIGKILL)
                agent.wait(5)
            version, _ = whole()
            cut_mid_apply += version == 1
        assert cut_mid_apply, "no kill landed while manifest 2's assets were being fetched"
        with agent_process(store=store, cloud=cloud, uplink=uplink, local=local,
                           data_dir=data_dir, log=log):
            await wait_until(lambda: (on_disk() or (0, []))[0] == 2, within_s=30,
                             what="manifest 2 applied after the kills")
        assert whole() == (2, shas)


async def test_an_asset_larger_than_the_cache_bound_is_refused_clearly(
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]) -> None:
    broker = mosquitto_factory()
    cloud = Cloud(tmp_path, broker)
    cfg = make_config(tmp_path / "box", uplink=broker, local=None,
                      modules={"content": {**cloud.content_settings(), "cache_max_mb": 1}})
    async with cloud.serving() as http, running_agent(cfg) as agent:
        big = await upload(http, b"x" * (1024 * 1024 + 1), "big")
        await publish(http, cfg.store_id, [big], "day-1")

        async def refused() -> bool:
            r = await http.get("/api/v1/content/status", params={"store_id": cfg.store_id})
            return bool(r.json()[0]["state"] == "refused")

        await until_true(refused, what="the store shows the manifest refused")
        r = await http.get("/api/v1/content/status", params={"store_id": cfg.store_id})
        assert r.json()[0]["detail"] == (
            f"too_large: asset day-1-0.wav ({big[:12]}) is 1048577 bytes, larger than "
            "the cache bound of 1048576")
        assert metric(agent, "storefleet_content_manifests_total", result="too_large") == 1
        assert metric(agent, "storefleet_artifact_downloaded_bytes_total") == 0
        assert applied_version(agent) is None
