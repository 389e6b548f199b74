"""Artifacts through the real API (decision 0036): uploaded once, stored by sha256,
manifests signed with the release key, bytes served with Range."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from cloud.artifacts.service import release_signer
from cloud.main import create_app
from cloud.promotions.signing import SnapshotSigner, verify_document
from cloud.publish import MemoryPublisher
from cloud.secrets_cli import init_secrets
from cloud.settings import CloudSettings
from edge_agent.cartscreen.server import EmbeddedServer
from tests.cloud.conftest import ADMIN, DEVICE_S1, TECH, api_client, auth, make_settings, metric
from tests.services import free_port

BODY = bytes(range(256)) * 1000  # 256 kB, every byte value


def upload(client: httpx.AsyncClient, data: bytes, *, kind: str = "firmware",
           target: str = "firmware:esl/ap-1", version: str = "1.0.0",
           token: str = ADMIN):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/artifacts", content=data, headers=auth(token),
                       params={"kind": kind, "target": target, "version": version})


def make_app(db_url: str, tmp_path: Path, registry: CollectorRegistry,
             signer: SnapshotSigner, **kw: Any):  # type: ignore[no-untyped-def]
    settings = make_settings(db_url, artifact_dir=str(tmp_path / "blobs"), **kw)
    return create_app(settings, registry=registry, publisher=MemoryPublisher(), release=signer)


async def test_upload_sign_serve_with_range_and_list(db_url: str, tmp_path: Path) -> None:
    registry, signer = CollectorRegistry(), SnapshotSigner.generate()
    sha = hashlib.sha256(BODY).hexdigest()
    async with api_client(make_app(db_url, tmp_path, registry, signer)) as client:
        r = await upload(client, BODY)
        assert r.status_code == 201, r.text
        manifest = verify_document(r.json(), signer.trusted())
        assert manifest == {"document": "storefleet.artifact/1", "sha256": sha,
                            "size": len(BODY), "kind": "firmware",
                            "target": "firmware:esl/ap-1", "version": "1.0.0",
                            "created_ms": manifest["created_ms"]}
        assert (tmp_path / "blobs" / sha[:2] / sha).read_bytes() == BODY
        again = await upload(client, BODY)  # the same bytes, target and version: a no-op
        assert again.status_code == 200 and again.json() == r.json()

        # A box reads with its device token: manifest, whole file, then a range of it.
        got = await client.get(f"/api/v1/artifacts/{sha}", headers=auth(DEVICE_S1))
        assert got.status_code == 200 and got.json() == r.json()
        whole = await client.get(f"/api/v1/artifacts/{sha}/content", headers=auth(DEVICE_S1))
        assert whole.status_code == 200 and whole.content == BODY
        assert whole.headers["accept-ranges"] == "bytes"
        part = await client.get(f"/api/v1/artifacts/{sha}/content",
                                headers={**auth(DEVICE_S1), "Range": "bytes=1000-"})
        assert part.status_code == 206 and part.content == BODY[1000:]
        assert part.headers["content-range"] == f"bytes 1000-{len(BODY) - 1}/{len(BODY)}"
        # what the downloads cost the cloud: the whole file, then the range
        assert metric(registry, "storefleet_artifact_served_bytes_total") == \
            2 * len(BODY) - 1000

        await upload(client, b"model bytes", kind="model", target="model:vision",
                     version="2026.12")
        listed = await client.get("/api/v1/artifacts", headers=auth(TECH))
        assert [a["target"] for a in listed.json()] == ["model:vision", "firmware:esl/ap-1"]
        only = await client.get("/api/v1/artifacts", headers=auth(TECH),
                                params={"kind": "firmware"})
        assert [a["sha256"] for a in only.json()] == [sha]
        keys = (await client.get("/api/v1/artifacts/keys", headers=auth(DEVICE_S1))).json()
        assert [k["key_id"] for k in keys] == [signer.key_id]
    assert metric(registry, "storefleet_artifact_uploads_total", result="stored") == 2
    assert metric(registry, "storefleet_artifact_uploads_total", result="unchanged") == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_refused_uploads(db_url: str, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    app = make_app(db_url, tmp_path, registry, SnapshotSigner.generate(),
                   max_artifact_bytes=100_000)
    async with api_client(app) as client:
        assert (await upload(client, b"x" * 10)).status_code == 201
        # A version names one thing: other bytes for it are a conflict, and not kept.
        conflict = await upload(client, b"y" * 10)
        assert conflict.status_code == 409, conflict.text
        assert conflict.json()["type"].endswith("artifact_conflict")
        blobs = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
        assert len(blobs) == 1
        # The same bytes as another target: a conflict too.
        assert (await upload(client, b"x" * 10, version="1.0.1")).status_code == 409
        bad = await upload(client, b"x", kind="firmware", target="model:vision")
        assert bad.status_code == 422 and "target" in bad.json()["detail"]
        assert (await upload(client, b"x", target="firmware:esl")).status_code == 422
        assert (await upload(client, b"x", version="../1")).status_code == 422
        assert (await upload(client, b"x" * 100_001, version="9")).status_code == 413

        async def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: streamed
            for _ in range(20):
                yield b"z" * 10_000

        streamed = await client.post("/api/v1/artifacts", content=chunks(), headers=auth(ADMIN),
                                     params={"kind": "agent", "target": "agent",
                                             "version": "9"})
        assert streamed.status_code == 413, streamed.text
        assert list((tmp_path / "blobs" / "tmp").iterdir()) == []  # nothing half-written left
        assert (await upload(client, b"x", token=TECH, version="2")).status_code == 403
        missing = await client.get("/api/v1/artifacts/" + "0" * 64, headers=auth(TECH))
        assert missing.status_code == 404
        assert (await client.get("/api/v1/artifacts/nothex", headers=auth(TECH))).status_code \
            == 422
    assert metric(registry, "storefleet_artifact_uploads_total", result="conflict") == 2
    # "firmware:esl" does not fit the target rule and is refused by the API's request
    # validation (a 422 problem like every malformed request) before the upload starts;
    # the other two are refused by the upload itself and counted there.
    assert metric(registry, "storefleet_artifact_uploads_total", result="invalid") == 2
    assert metric(registry, "storefleet_artifact_uploads_total", result="too_large") == 2


def test_release_key_from_secrets_init(tmp_path: Path) -> None:
    init_secrets(tmp_path / "etc")
    settings = CloudSettings.from_env(
        {"STOREFLEET_RELEASE_KEY_FILE": str(tmp_path / "etc" / "release-key.pem")})
    one, two = release_signer(settings), release_signer(settings)
    assert one.key_id == two.key_id  # the same key at every start
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(ValueError, match="release_key_file"):
        release_signer(CloudSettings(release_key_file=str(tmp_path / "bad.pem")))


async def test_an_upload_cut_midway_leaves_nothing_and_is_counted(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    app = make_app(f"sqlite:///{tmp_path / 'cut.db'}", tmp_path, registry,
                   SnapshotSigner.generate())
    port = free_port()
    server = EmbeddedServer(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(), name="artifact-cut-api")
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(("POST /api/v1/artifacts?kind=agent&target=agent&version=1 HTTP/1.1\r\n"
                      f"Host: cloud\r\nAuthorization: Bearer {ADMIN}\r\n"
                      "Content-Length: 1000000\r\n\r\n").encode() + b"x" * 300_000)
        await writer.drain()
        writer.transport.abort()  # gone with 700 kB still to send
        cut = "storefleet_artifact_uploads_total"
        for _ in range(200):
            if metric(registry, cut, result="cut"):
                break
            await asyncio.sleep(0.05)
        assert metric(registry, cut, result="cut") == 1
        assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            listed = await client.get("/api/v1/artifacts", headers=auth(ADMIN))
            assert listed.json() == []
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
