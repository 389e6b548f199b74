"""Where artifact bytes live: content-addressed, behind one narrow interface.

``ArtifactStorage`` is what the service and the content route need: ``put`` a stream
(hashing as it writes, bounded in size) and get back its sha256 and size; the ``size`` of
a stored blob and ``open`` a byte range of it as a ``BlobReader`` (the route answers
``Range`` requests with them, so a resumed download reads only the rest); ``delete`` an
unreferenced blob. The route serves what the store holds, as it is: a blob changed after
upload is caught by every box (the hash, the signed size), not by the cloud.

Two stores implement it, chosen by ``artifact_storage(settings)`` (decision 0036):

- ``LocalArtifactStorage`` (the default) keeps blobs in a directory
  (``STOREFLEET_ARTIFACT_DIR``) as ``<dir>/<sha[:2]>/<sha>``: an upload is written to
  ``<dir>/tmp/`` and renamed into place once complete and fsynced, so a reader never
  sees half a blob and a crash mid-upload leaves only a temp file.
- ``cloud.artifacts.s3.S3ArtifactStorage`` (``STOREFLEET_ARTIFACT_STORE=s3://bucket/
  prefix``) keeps them as objects ``<prefix>/<sha[:2]>/<sha>`` in an S3-compatible
  store; boto3 is imported only then (the optional extra ``storefleet[s3]``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from cloud.artifacts.errors import ArtifactStoreError, ArtifactTooLarge, UnknownArtifact

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from cloud.settings import CloudSettings

logger = logging.getLogger(__name__)

# 64 KiB per read: what Starlette's FileResponse sends per message; large enough that a
# 50 MB artifact is under a thousand worker-thread hops, small enough to stay off the heap.
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Blob:
    sha256: str
    size: int


class BlobReader:
    """An opened byte range of a blob: ``chunks()`` yields exactly ``length`` bytes, then
    closes what was opened (also when the reader stops early: a box that hangs up).

    ``read(n)`` and ``close()`` are the blocking calls of the backend (a file, an S3
    body); reads run in a worker thread. ``close`` is called directly, never awaited: it
    runs in a ``finally`` that a cancelled transfer reaches with its cancel scope still
    cancelling every await, and closing a file or a socket does not block.
    """

    def __init__(self, *, read: Callable[[int], bytes], close: Callable[[], None],
                 length: int, sha256: str) -> None:
        self._read = read
        self._close = close
        self.length = length
        self.sha256 = sha256
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    async def chunks(self) -> AsyncIterator[bytes]:
        remaining = self.length
        try:
            while remaining > 0:
                chunk = await asyncio.to_thread(self._read, min(CHUNK_BYTES, remaining))
                if not chunk:
                    logger.error("artifact %s: the stored blob ended %d bytes early",
                                 self.sha256, remaining)
                    raise ArtifactStoreError(f"stored blob {self.sha256} is shorter than "
                                             "recorded", operation="get", code="short")
                remaining -= len(chunk)
                yield chunk
        finally:
            self.close()


class ArtifactStorage(Protocol):
    async def put(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> Blob: ...

    async def size(self, sha256: str) -> int:
        """The stored blob's size; ``UnknownArtifact`` if there is none."""
        ...

    async def open(self, sha256: str, *, start: int, end: int) -> BlobReader:
        """Bytes ``start`` to ``end`` (exclusive) of a stored blob; ``UnknownArtifact`` if
        there is none, an ``ArtifactStoreError`` if the store fails."""
        ...

    async def delete(self, sha256: str) -> None: ...


def artifact_storage(settings: CloudSettings, *,
                     registry: CollectorRegistry) -> ArtifactStorage:
    """The store ``settings`` name: the S3-compatible one for ``artifact_store``, else
    the local directory."""
    if settings.artifact_s3 is None:
        return LocalArtifactStorage(Path(settings.artifact_dir))
    try:
        from cloud.artifacts.s3 import S3ArtifactStorage
    except ImportError as err:  # boto3 is the optional extra storefleet[s3]
        raise ValueError("artifact_store: an s3:// store needs boto3: install "
                         "storefleet[s3]") from err
    return S3ArtifactStorage.from_settings(settings, registry=registry)


def _write_chunk(out: BinaryIO, chunk: bytes) -> None:
    out.write(chunk)


def _close(out: BinaryIO, *, durable: bool) -> None:
    out.flush()
    if durable:
        os.fsync(out.fileno())  # complete on disk before it becomes visible under its name
    out.close()


async def spool(chunks: AsyncIterator[bytes], *, tmp_dir: Path, max_bytes: int,
                durable: bool) -> tuple[Path, Blob]:
    """Write ``chunks`` to a new file in ``tmp_dir``, hashing and counting them as they
    come (a blob's name is its hash, known only at the end); over ``max_bytes`` is
    ``ArtifactTooLarge``. On any failure the file is removed before the error goes on."""
    await asyncio.to_thread(tmp_dir.mkdir, parents=True, exist_ok=True)
    tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
    digest, size = hashlib.sha256(), 0
    # File writes block: each one runs in a worker thread, never on the event loop.
    out = await asyncio.to_thread(open, tmp, "wb")
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise ArtifactTooLarge(max_bytes)
            digest.update(chunk)
            await asyncio.to_thread(_write_chunk, out, chunk)
        await asyncio.to_thread(_close, out, durable=durable)
    except BaseException:
        await asyncio.to_thread(out.close)
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
        raise
    return tmp, Blob(sha256=digest.hexdigest(), size=size)


def _place(tmp: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)


def _open_at(path: Path, start: int) -> BinaryIO:
    file = path.open("rb")
    file.seek(start)
    return file


class LocalArtifactStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _blob(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    async def put(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> Blob:
        tmp, blob = await spool(chunks, tmp_dir=self.root / "tmp", max_bytes=max_bytes,
                                durable=True)
        try:
            await asyncio.to_thread(_place, tmp, self._blob(blob.sha256))
        except BaseException:
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
            raise
        return blob

    async def size(self, sha256: str) -> int:
        try:
            return (await asyncio.to_thread(self._blob(sha256).stat)).st_size
        except FileNotFoundError as err:
            raise UnknownArtifact(sha256) from err

    async def open(self, sha256: str, *, start: int, end: int) -> BlobReader:
        try:
            file = await asyncio.to_thread(_open_at, self._blob(sha256), start)
        except FileNotFoundError as err:
            raise UnknownArtifact(sha256) from err
        return BlobReader(read=file.read, close=file.close, length=end - start,
                          sha256=sha256)

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(self._blob(sha256).unlink, missing_ok=True)
