"""Where artifact bytes live: content-addressed, behind one narrow interface.

``ArtifactStorage`` is what the service needs: ``put`` a stream (hashing as it writes,
bounded in size) and get back its sha256 and size; ``path`` of a stored blob, for the
HTTP route to serve with ``Range`` support; ``delete`` an unreferenced blob.

``LocalArtifactStorage`` keeps blobs in a directory (``STOREFLEET_ARTIFACT_DIR``) as
``<dir>/<sha[:2]>/<sha>``: an upload is written to ``<dir>/tmp/`` and renamed into place
once complete and fsynced, so a reader never sees half a blob and a crash mid-upload
leaves only a temp file. An S3-compatible store is not implemented (decision 0036); it
would implement the same three methods, ``path`` becoming a presigned URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from cloud.artifacts.errors import ArtifactTooLarge, UnknownArtifact


@dataclass(frozen=True, slots=True)
class Blob:
    sha256: str
    size: int


class ArtifactStorage(Protocol):
    async def put(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> Blob: ...

    def path(self, sha256: str) -> Path: ...

    async def delete(self, sha256: str) -> None: ...


def _write_chunk(out: BinaryIO, chunk: bytes) -> None:
    out.write(chunk)


def _finish(out: BinaryIO, tmp: Path, final: Path) -> None:
    out.flush()
    os.fsync(out.fileno())  # complete on disk before it becomes visible under its name
    out.close()
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)


class LocalArtifactStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _blob(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    async def put(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> Blob:
        tmp_dir = self.root / "tmp"
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
            sha256 = digest.hexdigest()
            await asyncio.to_thread(_finish, out, tmp, self._blob(sha256))
        except BaseException:
            await asyncio.to_thread(out.close)
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
            raise
        return Blob(sha256=sha256, size=size)

    def path(self, sha256: str) -> Path:
        path = self._blob(sha256)
        if not path.is_file():
            raise UnknownArtifact(sha256)
        return path

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(self._blob(sha256).unlink, missing_ok=True)
