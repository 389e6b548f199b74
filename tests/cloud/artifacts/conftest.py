"""An S3-compatible store for the artifact tests: moto's standalone server on a free
loopback port, spoken to by boto3 over real HTTP (decision 0036: MinIO is not installable
on these machines; moto's server answers the same S3 REST API)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from tests.services import free_port

REGION = "us-east-1"
KEY_ID, SECRET = "test-access-key-id", "test-secret-access-key"
_buckets = itertools.count()


@dataclass(frozen=True)
class S3Store:
    """A fresh bucket on the running server, and the settings that name it."""

    url: str
    bucket: str
    client: Any  # boto3's S3 client, to look at the bucket from outside the cloud

    def settings(self, prefix: str = "artifacts", **kw: Any) -> dict[str, Any]:
        return {"artifact_store": f"s3://{self.bucket}/{prefix}",
                "artifact_s3_endpoint_url": self.url, "artifact_s3_region": REGION,
                "artifact_s3_access_key_id": KEY_ID,
                "artifact_s3_secret_access_key": SECRET, **kw}

    def keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.bucket)
        return [o["Key"] for o in listed.get("Contents", [])]


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_url: str) -> S3Store:
    client = boto3.session.Session().client(
        "s3", endpoint_url=s3_url, region_name=REGION, aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET, config=Config(s3={"addressing_style": "path"}))
    bucket = f"storefleet-test-{next(_buckets)}"
    client.create_bucket(Bucket=bucket)
    return S3Store(url=s3_url, bucket=bucket, client=client)
