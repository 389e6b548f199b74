"""The ``ArtifactStorage`` contract, on both stores (decision 0036): the local directory
and an S3-compatible store (moto's server over real HTTP, tests/cloud/artifacts/conftest.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cloud.artifacts.errors import ArtifactTooLarge, UnknownArtifact
from cloud.artifacts.s3 import PART_BYTES, S3ArtifactStorage
from cloud.artifacts.storage import ArtifactStorage, Blob, artifact_storage
from cloud.settings import CloudSettings
from tests.cloud.artifacts.conftest import S3Store


async def chunks(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at:at + size]


async def read(storage: ArtifactStorage, sha256: str, start: int, end: int) -> bytes:
    reader = await storage.open(sha256, start=start, end=end)
    return b"".join([chunk async for chunk in reader.chunks()])


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStorage:
    extra: dict[str, Any] = {}
    if request.param == "s3":
        extra = request.getfixturevalue("s3").settings()
    return artifact_storage(CloudSettings(artifact_dir=str(tmp_path / "blobs"), **extra),
                            registry=CollectorRegistry())


async def test_put_size_open_and_delete(storage: ArtifactStorage, tmp_path: Path) -> None:
    body = os.urandom(300_000)
    sha = hashlib.sha256(body).hexdigest()
    blob = await storage.put(chunks(body), max_bytes=1_000_000)
    assert blob == Blob(sha256=sha, size=len(body))
    assert await storage.size(sha) == len(body)
    assert await read(storage, sha, 0, len(body)) == body
    assert await read(storage, sha, 1000, 70_000) == body[1000:70_000]  # across chunks
    assert await read(storage, sha, len(body) - 1, len(body)) == body[-1:]
    # The same bytes again are the same blob: a no-op, not a second copy.
    assert await storage.put(chunks(body), max_bytes=1_000_000) == blob

    with pytest.raises(ArtifactTooLarge):
        await storage.put(chunks(b"x" * 2000, size=500), max_bytes=1000)
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []  # nothing half-written left

    await storage.delete(sha)
    with pytest.raises(UnknownArtifact):
        await storage.size(sha)
    with pytest.raises(UnknownArtifact):
        await storage.open(sha, start=0, end=1)
    await storage.delete(sha)  # deleting what is gone is not an error


async def test_s3_upload_is_multipart_from_disk_keyed_by_sha256_and_sent_once(
        s3: S3Store, tmp_path: Path) -> None:
    storage = artifact_storage(CloudSettings(artifact_dir=str(tmp_path / "blobs"),
                                             **s3.settings(prefix="fleet/blobs/")),
                               registry=CollectorRegistry())
    assert isinstance(storage, S3ArtifactStorage)
    calls: list[str] = []
    storage.client.meta.events.register(
        "before-call.s3", lambda model, **_: calls.append(model.name))
    body = os.urandom(PART_BYTES + 300_000)  # just over one part: two parts
    sha = hashlib.sha256(body).hexdigest()
    await storage.put(chunks(body, size=1024 * 1024), max_bytes=len(body))
    assert s3.keys() == [f"fleet/blobs/{sha[:2]}/{sha}"]  # the local store's layout
    head = s3.client.head_object(Bucket=s3.bucket, Key=s3.keys()[0])
    assert head["ContentLength"] == len(body)
    assert head["ETag"].strip('"').endswith("-2")  # S3's mark of a two-part upload
    assert "CreateMultipartUpload" in calls and "PutObject" not in calls

    calls.clear()
    await storage.put(chunks(body, size=1024 * 1024), max_bytes=len(body))
    assert calls == ["HeadObject"]  # already there under its hash: nothing sent again
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []  # the spooled copy removed
