"""Artifacts in an S3-compatible store: AWS S3, MinIO, Ceph RGW ... (decision 0036).

Chosen by ``STOREFLEET_ARTIFACT_STORE=s3://bucket[/prefix]``; the same ``ArtifactStorage``
interface as the local directory, and the same layout: a blob is the object
``<prefix>/<sha[:2]>/<sha>``.

- ``put``: the upload is spooled to a temp file under ``<artifact_dir>/tmp`` as it
  arrives (hashed and bounded on the way: the key is the hash, known only at the end),
  then sent with boto3's ``upload_fileobj`` from that file: a multipart upload in
  ``PART_BYTES`` parts above that size, read part by part, never the whole artifact in
  memory. An object already under the key is the same bytes (the key is their hash), so
  it is not sent again. The temp file is removed in every case.
- ``size``: HeadObject (its answer to a missing key or bucket is a bare 404, so on a 404
  HeadBucket tells which: ``UnknownArtifact``, or ``StoreRefused`` ``NoSuchBucket``).
- ``open``: a ranged GetObject (``Range: bytes=start-end``): a box resuming at byte N
  costs the store, the cloud and the link only the rest; the body is streamed.

boto3 is synchronous: every call runs in a worker thread. Its errors are mapped once,
here, where they enter our code: an answer from the store (``NoSuchBucket``,
``InvalidAccessKeyId``, ``SignatureDoesNotMatch``, ``AccessDenied`` ...) is
``StoreRefused``; no answer (connection refused, timeouts, a cut body) is
``StoreUnreachable``; a missing key on a read is ``UnknownArtifact``. Each store failure
is counted in ``storefleet_artifact_store_errors_total{operation,reason}`` and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from prometheus_client import CollectorRegistry, Counter

from cloud.artifacts.errors import (
    ArtifactError,
    ArtifactStoreError,
    StoreRefused,
    StoreUnreachable,
    UnknownArtifact,
)
from cloud.artifacts.storage import Blob, BlobReader, spool
from cloud.settings import CloudSettings, S3Location

logger = logging.getLogger(__name__)

# 8 MiB parts: S3's floor is 5 MiB; at 8 MiB a 4 GiB artifact is 512 parts (the limit is
# 10,000). From a file object boto3 reads each part into memory before sending it: four
# in flight and four read at most keep an upload near 32 MiB, whatever its size.
PART_BYTES = 8 * 1024 * 1024
_TRANSFER = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES,
                           max_concurrency=4)
# s3transfer's setting, which boto3's TransferConfig takes only as an attribute.
_TRANSFER.max_in_memory_upload_chunks = 4
# What a missing key reads as: NoSuchKey on GET; HEAD answers have no body, hence "404".
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def client_config(*, path_style: bool) -> Config:
    return Config(
        # 5 s to connect: a store on the same network answers in milliseconds; 60 s per
        # read: a part of 8 MiB on a slow link. Standard retries: 3 attempts in all.
        connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 3},
        # MinIO and most S3-compatible stores are addressed by path, not by a bucket
        # host name that would need its own DNS entry.
        s3={"addressing_style": "path" if path_style else "auto"},
        # boto3 >= 1.36 adds CRC checksums to every upload by default, which several
        # S3-compatible stores refuse; our bytes are checked by their sha256 anyway.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


class S3ArtifactStorage:
    def __init__(self, *, client: Any, location: S3Location, spool_dir: Path,
                 registry: CollectorRegistry) -> None:
        self.client = client  # boto3 S3 client (thread-safe; its calls run in threads)
        self.bucket = location.bucket
        self.prefix = location.prefix
        self._spool_dir = spool_dir
        self.errors = Counter(
            "storefleet_artifact_store_errors", "Failed calls to the S3-compatible "
            "artifact store by operation (put, get, delete) and reason (store_refused, "
            "store_unreachable, store)", ["operation", "reason"], registry=registry)

    @classmethod
    def from_settings(cls, settings: CloudSettings, *,
                      registry: CollectorRegistry) -> S3ArtifactStorage:
        location = settings.artifact_s3
        if location is None:
            raise ValueError("artifact_store: not an S3 store")
        secret = settings.artifact_s3_secret_access_key
        # A session of its own: boto3's default session is module-global state.
        client = boto3.session.Session().client(
            "s3", endpoint_url=settings.artifact_s3_endpoint_url,
            region_name=settings.artifact_s3_region,
            aws_access_key_id=settings.artifact_s3_access_key_id,
            aws_secret_access_key=None if secret is None else secret.get_secret_value(),
            config=client_config(path_style=settings.artifact_s3_endpoint_url is not None))
        logger.info("artifacts: stored in s3://%s/%s at %s", location.bucket,
                    location.prefix, settings.artifact_s3_endpoint_url or "AWS S3")
        return cls(client=client, location=location,
                   spool_dir=Path(settings.artifact_dir) / "tmp", registry=registry)

    def key(self, sha256: str) -> str:
        name = f"{sha256[:2]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def _failed(self, err: Exception, *, operation: str, sha256: str) -> ArtifactError:
        """``err`` from boto3 as our error, counted and logged (a missing key on a read
        is an ``UnknownArtifact``: the caller's 404, not a store failure)."""
        store = f"s3://{self.bucket}/{self.key(sha256)}"
        mapped: ArtifactStoreError
        if isinstance(err, ClientError):
            error = err.response.get("Error", {})
            code = str(error.get("Code", "unknown"))
            if operation == "get" and code in _MISSING:
                return UnknownArtifact(sha256)
            mapped = StoreRefused(f"artifact store refused {operation} of {store}: {code} "
                                  f"({error.get('Message', '')})", operation=operation,
                                  code=code)
        elif isinstance(err, NoCredentialsError | PartialCredentialsError):
            mapped = StoreRefused(f"artifact store {operation} of {store}: no credentials "
                                  f"({err})", operation=operation, code="credentials")
        elif isinstance(err, ConnectionError | HTTPClientError):
            mapped = StoreUnreachable(f"artifact store unreachable for {operation} of "
                                      f"{store}: {err}", operation=operation,
                                      code=type(err).__name__)
        else:
            mapped = ArtifactStoreError(f"artifact store {operation} of {store} failed: "
                                        f"{err}", operation=operation,
                                        code=type(err).__name__)
        self.errors.labels(operation=operation, reason=mapped.reason).inc()
        logger.error("%s", mapped)
        return mapped

    async def _call(self, operation: str, sha256: str, call: Callable[..., Any],
                    **kw: Any) -> Any:
        try:
            return await asyncio.to_thread(call, **kw)
        except (ClientError, BotoCoreError) as err:
            raise self._failed(err, operation=operation, sha256=sha256) from err

    async def _exists(self, sha256: str) -> bool:
        try:
            await asyncio.to_thread(self.client.head_object, Bucket=self.bucket,
                                    Key=self.key(sha256))
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) in _MISSING:
                return False  # (a missing bucket too: the upload then says which)
            raise self._failed(err, operation="put", sha256=sha256) from err
        except BotoCoreError as err:
            raise self._failed(err, operation="put", sha256=sha256) from err
        return True

    async def put(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> Blob:
        tmp, blob = await spool(chunks, tmp_dir=self._spool_dir, max_bytes=max_bytes,
                                durable=False)  # the store keeps it, not this disk
        try:
            if await self._exists(blob.sha256):
                logger.info("artifact %s already in the store", blob.sha256)
                return blob

            def upload() -> None:
                with tmp.open("rb") as file:
                    self.client.upload_fileobj(file, self.bucket, self.key(blob.sha256),
                                                Config=_TRANSFER)

            await self._call("put", blob.sha256, upload)
            return blob
        finally:
            await asyncio.to_thread(tmp.unlink, missing_ok=True)

    async def size(self, sha256: str) -> int:
        try:
            head = await asyncio.to_thread(self.client.head_object, Bucket=self.bucket,
                                           Key=self.key(sha256))
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) not in _MISSING:
                raise self._failed(err, operation="get", sha256=sha256) from err
            await self._bucket_exists(sha256)
            raise UnknownArtifact(sha256) from err
        except BotoCoreError as err:
            raise self._failed(err, operation="get", sha256=sha256) from err
        return int(head["ContentLength"])

    async def _bucket_exists(self, sha256: str) -> None:
        try:
            await asyncio.to_thread(self.client.head_bucket, Bucket=self.bucket)
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) in _MISSING:
                err.response["Error"]["Code"] = "NoSuchBucket"  # HEAD answers carry no code
            raise self._failed(err, operation="get", sha256=sha256) from err
        except BotoCoreError as err:
            raise self._failed(err, operation="get", sha256=sha256) from err

    async def open(self, sha256: str, *, start: int, end: int) -> BlobReader:
        if end <= start:  # an empty artifact: there is no byte range to ask for
            return BlobReader(read=lambda _: b"", close=lambda: None, length=0,
                              sha256=sha256)
        answer = await self._call("get", sha256, self.client.get_object,
                                  Bucket=self.bucket, Key=self.key(sha256),
                                  Range=f"bytes={start}-{end - 1}")
        body = answer["Body"]

        def read(size: int) -> bytes:
            try:
                return bytes(body.read(size))
            except BotoCoreError as err:  # the body cut or stalled mid-stream
                raise self._failed(err, operation="get", sha256=sha256) from err

        return BlobReader(read=read, close=body.close, length=end - start, sha256=sha256)

    async def delete(self, sha256: str) -> None:
        await self._call("delete", sha256, self.client.delete_object, Bucket=self.bucket,
                         Key=self.key(sha256))
