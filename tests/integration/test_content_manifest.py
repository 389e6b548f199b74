"""Content manifests end to end (decision 0046): the real cloud under uvicorn with ingest,
real Mosquitto, real agents with the ``content`` module.

HQ uploads an asset and publishes a schedule and playlists to two stores; both apply
(the asset verified in their cache, ``applied.json`` switched, consumers told) and the
status API shows both converged with their price book and schedule versions. A manifest
whose payload was changed after signing is refused and counted while the applied one
keeps running; an asset whose bytes were changed in the blob store is refused and the
manifest not switched, and the store shows ``refused``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import pytest

from cloud.promotions.signing import SnapshotSigner
from edge_agent.app import Agent
from edge_agent.modules.content import AppliedContent, Content
from protocols import topics
from tests.cloud.conftest import ADMIN, auth
from tests.edge_agent.helpers import metric, wait_until
from tests.fleet.test_fleet_artifacts import fleet as fleet_cli
from tests.integration.rollout_fleet import Fleet, fleet, until_true
from tests.services import Mosquitto

pytestmark = [pytest.mark.mosquitto]

SCHEDULE = {"version": "sched-7", "dayparts": [{"from": "08:00", "playlist": "morning"}]}
PLAYLISTS = {"morning": ["jingle.wav"]}


def content_of(agent: Agent) -> Content:
    module = agent.module("content")
    assert isinstance(module, Content)
    return module


def applied_version(agent: Agent) -> int | None:
    applied = content_of(agent).applied
    return applied.manifest.version if applied else None


async def upload_asset(f: Fleet, body: bytes, version: str) -> str:
    r = await f.http.post("/api/v1/artifacts", content=body, headers=auth(ADMIN),
                          params={"kind": "asset", "target": "content", "version": version})
    assert r.status_code == 201, r.text
    return str(r.json()["payload"]["sha256"])


async def publish(f: Fleet, stores: list[str], assets: list[dict[str, str]],
                  schedule: dict[str, Any] = SCHEDULE) -> dict[str, Any]:
    r = await f.http.post("/api/v1/content/publish", headers=auth(ADMIN), json={
        "stores": stores, "documents": {"schedule": schedule, "playlists": PLAYLISTS},
        "assets": assets})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def status(f: Fleet, store: str | None = None) -> dict[str, dict[str, Any]]:
    r = await f.http.get("/api/v1/content/status", headers=auth(ADMIN),
                         params={"store_id": store} if store else {})
    assert r.status_code == 200, r.text
    return {row["store_id"]: row for row in r.json()}


async def test_publish_applies_everywhere_and_refuses_tampering(
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]) -> None:
    async with fleet(tmp_path, mosquitto_factory, 2,
                     content_signer=SnapshotSigner.generate()) as f:
        a, b = f.agents
        seen: list[AppliedContent] = []
        content_of(a).on_applied(seen.append)
        r = await f.http.post("/api/v1/price-books", headers=auth(ADMIN), json={
            "currency": "EUR", "items": [{"sku": "apple", "name": "Apple", "price": 120}]})
        assert r.status_code == 201, r.text
        book = r.json()["version"]

        # uploaded and published with the fleet CLI (real subprocesses against the API)
        jingle = b"RIFF" + bytes(range(256)) * 64
        files = {"jingle.wav": jingle, "schedule.json": json.dumps(SCHEDULE).encode(),
                 "playlists.json": json.dumps(PLAYLISTS).encode()}
        for name, body in files.items():
            (tmp_path / name).write_bytes(body)

        async def cli(*args: str) -> Any:
            done = await asyncio.to_thread(fleet_cli, str(f.http.base_url), ADMIN, *args,
                                           "--json", config=tmp_path / "config")
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        uploaded = await cli("artifact", "upload", str(tmp_path / "jingle.wav"), "--kind",
                             "asset", "--target", "content", "--version", "jingle-1")
        sha = uploaded["payload"]["sha256"]
        out = await cli("content", "publish", "--store", a.config.store_id, "--store",
                        b.config.store_id, "--doc", f"schedule={tmp_path / 'schedule.json'}",
                        "--doc", f"playlists={tmp_path / 'playlists.json'}",
                        "--asset", f"{sha}=jingle.wav")
        assert out["versions"] == {s: 1 for s in f.stores} and out["failed"] == []

        await wait_until(lambda: applied_version(a) == 1 and applied_version(b) == 1,
                         what="both stores applied manifest 1")
        assert seen and seen[-1].manifest.documents["schedule"] == SCHEDULE
        assert seen[-1].asset_path(sha).read_bytes() == jingle
        saved = json.loads((a.config.data_dir / "content" / "applied.json").read_text())
        assert saved["signed"]["payload"]["version"] == 1

        async def converged() -> bool:
            rows = await status(f)
            return all(rows[s]["state"] == "converged" for s in f.stores)

        await until_true(converged, what="status API shows both converged")
        row = (await status(f, a.config.store_id))[a.config.store_id]
        assert row["applied_version"] == row["published_version"] == 1
        assert row["price_book_version"] == book and row["schedule_version"] == "sched-7"
        assert row["assets_present"] == 1 and row["assets_missing"] == 0
        assert row["applied_ms"] is not None
        # the same through `fleet content status` (a real subprocess against the API)
        assert {r["store_id"]: r["state"] for r in await cli("content", "status")} == {
            s: "converged" for s in f.stores}
        done = await asyncio.to_thread(fleet_cli, str(f.http.base_url), ADMIN, "content",
                                       "status", "--store", b.config.store_id,
                                       config=tmp_path / "config")
        assert done.returncode == 0, done.stderr
        assert b.config.store_id in done.stdout and "sched-7" in done.stdout
        assert a.config.store_id not in done.stdout and "1 converged" in done.stdout

        # A manifest changed after signing (a higher version, another schedule): refused.
        applied = content_of(a).applied
        assert applied is not None
        signed = {**applied.signed, "payload": {
            **applied.signed["payload"], "version": 9,
            "documents": {"schedule": {"version": "evil"}}}}
        broker = urlsplit(f.app.state.cloud.settings.mqtt_url)
        async with aiomqtt.Client(broker.hostname or "127.0.0.1", port=broker.port or 1883) \
                as client:
            await client.publish(topics.content_manifest(a.config.store_id),
                                 json.dumps(signed).encode(), qos=1, retain=True)
        await wait_until(lambda: metric(a, "storefleet_content_manifests_total",
                                        result="signature") == 1, what="tampered refused")
        assert applied_version(a) == 1

        # An asset whose bytes changed in the blob store: refused, manifest 1 stays.
        evil = b"RIFF" + bytes(range(255, -1, -1)) * 64
        sha2 = await upload_asset(f, evil, "jingle-2")
        blob = tmp_path / "blobs" / sha2[:2] / sha2
        stored = blob.read_bytes()
        blob.write_bytes(stored[:10] + bytes([stored[10] ^ 0xFF]) + stored[11:])
        await publish(f, [b.config.store_id], [{"sha256": sha2, "name": "evil.wav"}])

        async def refused() -> bool:
            row = (await status(f, b.config.store_id))[b.config.store_id]
            return bool(row["state"] == "refused" and "tampered" in row["detail"])

        await until_true(refused, what="store b refused the tampered asset")
        assert applied_version(b) == 1
        assert metric(b, "storefleet_content_manifests_total", result="asset") == 1
        assert json.loads((b.config.data_dir / "content" / "applied.json").read_text()
                          )["signed"]["payload"]["version"] == 1
