"""Artifacts kept in an S3-compatible store, through the real API and a real box
(decision 0036): moto's server over real HTTP is the store (tests/cloud/artifacts/
conftest.py). Uploads land under their sha256; downloads, whole or resumed with Range,
are ranged reads of the object; a store that refuses or does not answer is a
problem+json 502/503, counted; an incomplete S3 configuration stops the cloud."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from cloud.artifacts.s3 import S3ArtifactStorage
from cloud.main import create_app
from cloud.promotions.signing import SnapshotSigner
from cloud.publish import MemoryPublisher
from cloud.settings import CloudSettings
from edge_agent.cartscreen.server import EmbeddedServer
from edge_agent.kernel.artifacts import ArtifactApi, ArtifactCache
from protocols.signed import load_public_keys
from tests.cloud.artifacts.conftest import S3Store
from tests.cloud.artifacts.test_artifacts_api import BODY, upload
from tests.cloud.conftest import ADMIN, DEVICE_S1, api_client, auth, make_settings, metric
from tests.services import free_port

SHA = hashlib.sha256(BODY).hexdigest()
CONTENT = f"/api/v1/artifacts/{SHA}/content"
SERVED = "storefleet_artifact_served_bytes_total"
STORE_ERRORS = "storefleet_artifact_store_errors_total"


def s3_app(tmp_path: Path, registry: CollectorRegistry, signer: SnapshotSigner,
           **store: Any):  # type: ignore[no-untyped-def]
    settings = make_settings(f"sqlite:///{tmp_path / 'cloud.db'}",
                             artifact_dir=str(tmp_path / "spool"), **store)
    return create_app(settings, registry=registry, publisher=MemoryPublisher(), release=signer)


def storage_of(app: Any) -> S3ArtifactStorage:
    storage = app.state.artifacts.service.storage
    assert isinstance(storage, S3ArtifactStorage)
    return storage


async def test_upload_and_ranged_downloads_on_s3(s3: S3Store, tmp_path: Path) -> None:
    registry, signer = CollectorRegistry(), SnapshotSigner.generate()
    app = s3_app(tmp_path, registry, signer, **s3.settings())
    ranges: list[str | None] = []
    storage_of(app).client.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: ranges.append(
            params["headers"].get("Range")))
    async with api_client(app) as client:
        r = await upload(client, BODY)
        assert r.status_code == 201, r.text
        assert s3.keys() == [f"artifacts/{SHA[:2]}/{SHA}"]
        assert list((tmp_path / "spool").rglob("*.part")) == []  # nothing kept on disk
        again = await upload(client, BODY)  # the same bytes, target and version: a no-op
        assert again.status_code == 200 and again.json() == r.json()
        assert s3.keys() == [f"artifacts/{SHA[:2]}/{SHA}"]

        whole = await client.get(CONTENT, headers=auth(DEVICE_S1))
        assert whole.status_code == 200 and whole.content == BODY
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-length"] == str(len(BODY))
        # A box resuming at byte 1000: only the rest is read from the store.
        part = await client.get(CONTENT, headers={**auth(DEVICE_S1), "Range": "bytes=1000-"})
        assert part.status_code == 206 and part.content == BODY[1000:]
        assert part.headers["content-range"] == f"bytes 1000-{len(BODY) - 1}/{len(BODY)}"
        middle = await client.get(CONTENT, headers={**auth(DEVICE_S1),
                                                    "Range": "bytes=70000-70099"})
        assert middle.status_code == 206 and middle.content == BODY[70_000:70_100]
        tail = await client.get(CONTENT, headers={**auth(DEVICE_S1), "Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == BODY[-10:]
        assert ranges == [f"bytes=0-{len(BODY) - 1}", f"bytes=1000-{len(BODY) - 1}",
                          "bytes=70000-70099", f"bytes={len(BODY) - 10}-{len(BODY) - 1}"]
        past = await client.get(CONTENT, headers={**auth(DEVICE_S1),
                                                  "Range": f"bytes={len(BODY)}-"})
        assert past.status_code == 416
        assert past.headers["content-range"] == f"bytes */{len(BODY)}"
        # what the downloads cost the cloud, as it sent them
        assert metric(registry, SERVED) == 2 * len(BODY) - 1000 + 100 + 10

        # The object gone from the store while its manifest is recorded: 404, not 500.
        s3.client.delete_object(Bucket=s3.bucket, Key=s3.keys()[0])
        gone = await client.get(CONTENT, headers=auth(DEVICE_S1))
        assert gone.status_code == 404, gone.text
    assert metric(registry, STORE_ERRORS, operation="get", reason="store_refused") == 0


async def test_missing_bucket_is_a_counted_502_problem(s3: S3Store, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    app = s3_app(tmp_path, registry, SnapshotSigner.generate(), **s3.settings())
    async with api_client(app) as client:
        assert (await upload(client, BODY)).status_code == 201
        s3.client.delete_object(Bucket=s3.bucket, Key=s3.keys()[0])
        s3.client.delete_bucket(Bucket=s3.bucket)

        refused = await upload(client, b"other bytes", version="1.0.1")
        assert refused.status_code == 502, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith("store_refused")
        assert "NoSuchBucket" in refused.json()["detail"]
        assert list((tmp_path / "spool" / "tmp").iterdir()) == []  # the spool cleaned up

        served = await client.get(CONTENT, headers=auth(DEVICE_S1))
        assert served.status_code == 502, served.text
        assert served.headers["content-type"] == "application/problem+json"
        assert "NoSuchBucket" in served.json()["detail"]
        listed = await client.get("/api/v1/artifacts", headers=auth(ADMIN))
        assert [a["version"] for a in listed.json()] == ["1.0.0"]  # nothing recorded
    assert metric(registry, STORE_ERRORS, operation="put", reason="store_refused") == 1
    assert metric(registry, STORE_ERRORS, operation="get", reason="store_refused") == 1
    assert metric(registry, "storefleet_artifact_uploads_total", result="store_error") == 1


async def test_unreachable_store_is_a_counted_503_problem(s3: S3Store, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = s3_app(tmp_path, registry, SnapshotSigner.generate(),
                 **s3.settings(artifact_s3_endpoint_url=nobody))
    async with api_client(app) as client:
        r = await upload(client, b"firmware bytes")
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["retry-after"] == "30"
        assert r.json()["type"].endswith("store_unreachable")
    assert metric(registry, STORE_ERRORS, operation="put", reason="store_unreachable") == 1


def test_incomplete_s3_settings_stop_the_cloud(s3: S3Store, tmp_path: Path) -> None:
    env = {"STOREFLEET_ARTIFACT_STORE": f"s3://{s3.bucket}/artifacts",
           "STOREFLEET_ARTIFACT_S3_ENDPOINT_URL": s3.url,
           "STOREFLEET_ARTIFACT_S3_REGION": "us-east-1",
           "STOREFLEET_ARTIFACT_S3_ACCESS_KEY_ID": "test-access-key-id"}
    with pytest.raises(ValueError, match="go together"):
        CloudSettings.from_env(env)  # a key id without its secret
    secret = tmp_path / "s3-secret"
    secret.write_text("test-secret-access-key\n")
    settings = CloudSettings.from_env(
        {**env, "STOREFLEET_ARTIFACT_S3_SECRET_ACCESS_KEY_FILE": str(secret)})
    assert settings.artifact_s3 == (s3.bucket, "artifacts")
    assert settings.artifact_s3_secret_access_key is not None
    assert settings.artifact_s3_secret_access_key.get_secret_value() == \
        "test-secret-access-key"
    no_region = {k: v for k, v in env.items() if "REGION" not in k}
    with pytest.raises(ValueError, match="artifact_s3_region"):
        CloudSettings.from_env(no_region)
    with pytest.raises(ValueError, match="bucket"):
        CloudSettings.from_env({**env, "STOREFLEET_ARTIFACT_STORE": "s3://B/x"})
    with pytest.raises(ValueError, match="without an S3 store"):
        CloudSettings.from_env({"STOREFLEET_ARTIFACT_S3_REGION": "us-east-1"})
    assert CloudSettings.from_env({"STOREFLEET_ARTIFACT_STORE": "local"}).artifact_s3 is None


async def test_a_box_fetches_and_resumes_from_the_cloud_on_s3(s3: S3Store,
                                                              tmp_path: Path) -> None:
    registry, signer = CollectorRegistry(), SnapshotSigner.generate()
    body = os.urandom(1024 * 1024 + 17)
    sha = hashlib.sha256(body).hexdigest()
    app = s3_app(tmp_path, registry, signer, **s3.settings())
    port = free_port()
    server = EmbeddedServer(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(), name="artifact-s3-api")
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            r = await http.post("/api/v1/artifacts", content=body, headers=auth(ADMIN),
                                params={"kind": "firmware", "target": "firmware:esl/ap-1",
                                        "version": "1.0"})
            assert r.status_code == 201, r.text
        # What a download cut at 400 kB left on the box (tests/edge_agent/
        # test_artifacts.py cuts real connections; here the store is the point).
        cas = tmp_path / "box" / "cas"
        (cas / "partial").mkdir(parents=True)
        (cas / "partial" / f"{sha}.part").write_bytes(body[:400_000])
        box_registry = CollectorRegistry()
        cache = ArtifactCache(cas, api=ArtifactApi(url, token=DEVICE_S1),
                              keys=load_public_keys(k["public_key"]
                                                    for k in signer.public_keys()),
                              registry=box_registry)
        path = await cache.fetch(sha, target="firmware:esl/ap-1")
        await cache.api.aclose()
        assert path.read_bytes() == body
        assert metric(box_registry, "storefleet_artifact_resumed_total") == 1
        assert metric(registry, SERVED) == len(body) - 400_000  # only the rest was sent
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
