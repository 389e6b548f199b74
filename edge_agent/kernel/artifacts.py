"""The box's content-addressed artifact cache: fetch, resume, verify, keep, evict.

    cache = ArtifactCache(data_dir / "cas", api=ArtifactApi(url, token=...),
                          keys=load_public_keys(trusted), registry=registry)
    path = await cache.fetch(sha256, target="firmware:esl/ap-1")   # verified bytes

``fetch`` trusts nothing the cloud says until the release key vouches for it: it gets
the artifact's signed manifest (``GET /api/v1/artifacts/{sha256}``), verifies it with
the trusted release keys, checks that it describes exactly the artifact asked for and
that its target is the one the caller is installing onto (the box decides its target
from what it is, not from the offer), then downloads the bytes into
``cas/partial/<sha256>.part``, resuming with ``Range`` from what a previous attempt left
there (a cut connection, or the agent killed with ``kill -9``). Complete bytes are
hashed; only bytes whose sha256 and size match the manifest are moved (fsync, rename)
to ``cas/<sha256>``, with the signed manifest beside them (``<sha256>.json``).

Errors (one tree; ``reason`` is the metric label)::

    ArtifactError (an AgentError)
     +-- ArtifactRefused     never installable as offered: unsigned, malformed,
     |                       untrusted_key, signature, manifest, target, size, tampered;
     |                       counted in storefleet_artifact_refused_total{reason}, logged
     +-- ArtifactUnavailable not fetched this time (network, http, short): the partial file
                             is kept and the next fetch resumes it

A tampered or oversized download is deleted (it would resume into the same bad bytes).
The cache is bounded: past ``max_bytes``, the least recently used entries that are not
``keep``-referenced are evicted. Decision 0036.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from edge_agent.errors import AgentError
from edge_agent.metrics import registry_scoped
from protocols.artifacts import SHA256_PATTERN, ArtifactManifest
from protocols.signed import SignatureError, verify_signed

logger = logging.getLogger(__name__)

_SHA256 = re.compile(SHA256_PATTERN)
CHUNK = 256 * 1024  # hashing reads: big enough to be fast, small enough to stay off RSS


class ArtifactError(AgentError):
    """Base error of the artifact cache."""

    reason = "artifact"

    def __init__(self, reason: str, sha256: str, detail: str) -> None:
        super().__init__(f"artifact {sha256[:12]}: {reason}: {detail}")
        self.reason = reason
        self.sha256 = sha256
        self.detail = detail


class ArtifactRefused(ArtifactError):
    """The artifact must not be installed as offered."""


class ArtifactUnavailable(ArtifactError):
    """Not fetched this time; try again later (a partial download is kept)."""


class ArtifactMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.refused = Counter(
            "storefleet_artifact_refused", "Artifacts refused, by reason (unsigned, "
            "malformed, untrusted_key, signature, manifest, target, size, tampered)",
            ["reason"], registry=registry)
        self.fetched = Counter(
            "storefleet_artifact_fetches", "Artifact fetches by result (downloaded, cached, "
            "unavailable, refused)", ["result"], registry=registry)
        self.resumed = Counter(
            "storefleet_artifact_resumed", "Downloads continued from a partial file",
            registry=registry)
        self.bytes = Counter(
            "storefleet_artifact_downloaded_bytes", "Artifact bytes received",
            registry=registry)
        self.evicted = Counter(
            "storefleet_artifact_evicted", "Cache entries evicted to stay under the bound",
            registry=registry)


class ArtifactApi:
    """The two HTTP calls of the cache, with the store's device token."""

    def __init__(self, base_url: str, *, token: str | None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(base_url=base_url, headers=headers,
                                         transport=transport, timeout=timeout_s)

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """Send, and once more when the server closed the connection before any answer:
        a pooled keep-alive connection that the server dropped just as it was reused
        (uvicorn closes idle ones after 5 s, httpx keeps them 5 s). A GET, so safe to
        repeat; a cut in the middle of a body is not this and is left to resume."""
        try:
            return await self._client.send(request, stream=stream)
        except httpx.RemoteProtocolError as err:
            logger.info("artifacts: %s %s: %s; sending once more", request.method,
                        request.url.path, err)
        return await self._client.send(request, stream=stream)

    async def route_through(self, transport: httpx.AsyncBaseTransport) -> None:
        """Send every later call through ``transport``, with the same URL, token and
        timeout: a secondary box through its store's primary (decision 0049)."""
        old = self._client
        self._client = httpx.AsyncClient(base_url=old.base_url, headers=old.headers,
                                         transport=transport, timeout=old.timeout)
        await old.aclose()

    async def manifest(self, sha256: str) -> Any:
        try:
            response = await self._send(
                self._client.build_request("GET", f"/api/v1/artifacts/{sha256}"))
        except httpx.HTTPError as err:
            raise ArtifactUnavailable("network", sha256, str(err) or type(err).__name__) \
                from err
        if response.status_code != 200:
            raise ArtifactUnavailable("http", sha256, f"manifest: HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError as err:
            raise ArtifactRefused("malformed", sha256, "manifest is not JSON") from err

    @contextlib.asynccontextmanager
    async def content(self, sha256: str, *, offset: int) -> AsyncIterator[httpx.Response]:
        """The response streaming the bytes from ``offset``."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = await self._send(self._client.build_request(
            "GET", f"/api/v1/artifacts/{sha256}/content", headers=headers), stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _commit(out: BinaryIO, partial: Path, final: Path, manifest_path: Path,
            signed: str) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()
    manifest_path.write_text(signed, encoding="utf-8")
    os.replace(partial, final)  # the manifest first: a blob never lies there without one


class ArtifactCache:
    def __init__(self, root: Path, *, api: ArtifactApi, keys: Mapping[str, Ed25519PublicKey],
                 registry: CollectorRegistry, max_bytes: int | None = None,
                 keep: Callable[[], Collection[str]] = frozenset) -> None:
        self.root = root
        self.partial_dir = root / "partial"
        self.api = api
        self.keys = dict(keys)
        self.max_bytes = max_bytes
        self._keep = keep
        self.metrics = registry_scoped(registry, "artifacts", ArtifactMetrics)
        self._locks: dict[str, asyncio.Lock] = {}

    def path(self, sha256: str) -> Path:
        return self.root / sha256

    def manifest(self, sha256: str) -> ArtifactManifest | None:
        """The manifest of a cached artifact (verified again: the disk is not trusted)."""
        found = self.signed(sha256)
        return None if found is None else found[0]

    def signed(self, sha256: str) -> tuple[ArtifactManifest, Any] | None:
        """A cached artifact's manifest and the signed document it came in (verified
        again), for the store's peer cache to serve as the cloud did (decision 0049)."""
        try:
            signed = json.loads((self.root / f"{sha256}.json").read_text(encoding="utf-8"))
            return self._verify(sha256, signed), signed
        except (OSError, ValueError, ArtifactRefused):
            return None

    def verify(self, sha256: str, signed: Any) -> ArtifactManifest:
        """The manifest ``signed`` vouches for, if a release key signed it and it is the
        manifest of ``sha256``; else ``ArtifactRefused`` (not counted here)."""
        return self._verify(sha256, signed)

    async def fetch(self, sha256: str, *, target: str, signed: Any = None) -> Path:
        """The verified bytes of ``sha256`` for ``target``, downloading what is missing;
        ``signed``: its manifest document when the caller already fetched it."""
        if not _SHA256.match(sha256):
            raise self._refuse(ArtifactRefused("manifest", sha256, "not a sha256"))
        lock = self._locks.setdefault(sha256, asyncio.Lock())
        async with lock:
            try:
                path, result = await self._fetch(sha256, target=target, signed=signed)
            except ArtifactRefused as err:
                self.metrics.fetched.labels(result="refused").inc()
                raise self._refuse(err) from None
            except ArtifactUnavailable as err:
                self.metrics.fetched.labels(result="unavailable").inc()
                logger.warning("artifact %s not fetched (%s); will resume: %s", sha256[:12],
                               err.reason, err.detail)
                raise
            self.metrics.fetched.labels(result=result).inc()
        await self.evict(keep={sha256})
        return path

    def _refuse(self, err: ArtifactRefused) -> ArtifactRefused:
        self.metrics.refused.labels(reason=err.reason).inc()
        logger.error("artifact %s refused (%s): %s", err.sha256[:12], err.reason, err.detail)
        return err

    def _verify(self, sha256: str, signed: Any) -> ArtifactManifest:
        try:
            payload = verify_signed(signed, self.keys)
        except SignatureError as err:
            raise ArtifactRefused(err.reason, sha256, err.detail) from err
        try:
            manifest = ArtifactManifest.model_validate(payload)
        except ValidationError as err:
            raise ArtifactRefused("manifest", sha256, f"not an artifact manifest: {err}") \
                from err
        if manifest.sha256 != sha256:
            raise ArtifactRefused("manifest", sha256, f"manifest is for {manifest.sha256}")
        return manifest

    async def _fetch(self, sha256: str, *, target: str, signed: Any) -> tuple[Path, str]:
        final = self.path(sha256)
        cached = await asyncio.to_thread(self.manifest, sha256)
        if cached is not None and await asyncio.to_thread(final.is_file):
            self._check_target(cached, target)
            await asyncio.to_thread(os.utime, final)  # recently used: evicted last
            return final, "cached"
        if signed is None:
            signed = await self.api.manifest(sha256)
        manifest = self._verify(sha256, signed)
        self._check_target(manifest, target)
        await self._download(manifest, json.dumps(signed))
        logger.info("artifact %s (%s %s, %d bytes) verified and cached", sha256[:12],
                    manifest.target, manifest.version, manifest.size)
        return final, "downloaded"

    @staticmethod
    def _check_target(manifest: ArtifactManifest, target: str) -> None:
        if manifest.target != target:
            raise ArtifactRefused("target", manifest.sha256,
                                  f"made for {manifest.target!r}, not {target!r}")

    async def _download(self, manifest: ArtifactManifest, signed: str) -> None:
        sha256, size = manifest.sha256, manifest.size
        partial = self.partial_dir / f"{sha256}.part"
        await asyncio.to_thread(self.partial_dir.mkdir, parents=True, exist_ok=True)
        offset = await asyncio.to_thread(_size, partial)
        if offset > size:
            await asyncio.to_thread(partial.unlink)
            offset = 0
        if offset:
            self.metrics.resumed.inc()
            logger.info("artifact %s: resuming at byte %d of %d", sha256[:12], offset, size)
        # File writes block: each one runs in a worker thread, never on the event loop.
        out: BinaryIO = await asyncio.to_thread(open, partial, "ab")
        try:
            if offset < size:
                offset = await self._receive(manifest, out, offset)
            if offset < size:
                raise ArtifactUnavailable("short", sha256, f"{offset} of {size} bytes")
            await asyncio.to_thread(out.flush)
            digest, got = await asyncio.to_thread(_hash_file, partial)
            if got != size:
                raise ArtifactRefused("size", sha256, f"{got} bytes, manifest says {size}")
            if digest != sha256:
                raise ArtifactRefused("tampered", sha256, f"bytes hash to {digest}")
            await asyncio.to_thread(_commit, out, partial, self.path(sha256),
                                    self.root / f"{sha256}.json", signed)
        except ArtifactRefused:
            await asyncio.to_thread(out.close)
            await asyncio.to_thread(partial.unlink, missing_ok=True)  # never resume into it
            raise
        finally:
            if not out.closed:
                await asyncio.to_thread(out.close)

    async def _receive(self, manifest: ArtifactManifest, out: BinaryIO, offset: int) -> int:
        sha256, size = manifest.sha256, manifest.size
        try:
            async with self.api.content(sha256, offset=offset) as response:
                if response.status_code == 200 and offset:
                    # The server ignored the range: start over from the first byte.
                    await asyncio.to_thread(out.truncate, 0)
                    offset = 0
                elif response.status_code == 206:
                    start = _range_start(response.headers.get("content-range", ""))
                    if start != offset:
                        raise ArtifactUnavailable("http", sha256, "range answered from "
                                                  f"{start}, asked from {offset}")
                elif response.status_code != 200:
                    if response.status_code == 416:  # the partial is not a prefix of it
                        await asyncio.to_thread(out.truncate, 0)
                    raise ArtifactUnavailable("http", sha256,
                                              f"content: HTTP {response.status_code}")
                async for chunk in response.aiter_bytes():
                    if offset + len(chunk) > size:
                        raise ArtifactRefused("size", sha256, f"more than the manifest's "
                                              f"{size} bytes")
                    await asyncio.to_thread(out.write, chunk)
                    offset += len(chunk)
                    self.metrics.bytes.inc(len(chunk))
        except httpx.HTTPError as err:
            raise ArtifactUnavailable("network", sha256, f"cut at byte {offset}: "
                                      f"{str(err) or type(err).__name__}") from err
        return offset

    async def evict(self, *, keep: Collection[str] = ()) -> list[str]:
        """Drop least recently used entries until the cache fits ``max_bytes``."""
        if self.max_bytes is None:
            return []
        pinned = set(keep) | set(self._keep())
        evicted = await asyncio.to_thread(self._evict, pinned, self.max_bytes)
        for sha256 in evicted:
            self.metrics.evicted.inc()
            logger.info("artifact %s evicted from the cache", sha256[:12])
        return evicted

    def _evict(self, pinned: set[str], max_bytes: int) -> list[str]:
        entries = []
        for path in self.root.iterdir() if self.root.is_dir() else ():
            if path.is_file() and _SHA256.match(path.name):
                stat = path.stat()
                entries.append((stat.st_mtime, path.name, stat.st_size))
        total = sum(size for _, _, size in entries)
        evicted = []
        for _, sha256, size in sorted(entries):
            if total <= max_bytes:
                break
            if sha256 in pinned:
                continue
            (self.root / f"{sha256}.json").unlink(missing_ok=True)
            (self.root / sha256).unlink(missing_ok=True)
            total -= size
            evicted.append(sha256)
        return evicted


_CONTENT_RANGE = re.compile(r"^bytes (\d+)-\d+/(\d+|\*)$")


def _range_start(header: str) -> int | None:
    match = _CONTENT_RANGE.match(header.strip())
    return int(match.group(1)) if match else None
