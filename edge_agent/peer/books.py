"""The primary's copy of its store's price book on the wire (decisions 0047, 0049).

    books = BookCache(data_dir / "peer" / "books", store_id="S001", client=cloud_client,
                      keys=lambda: till.pos.pricebook.keys, clock=clock)
    reply = await books.header(base=41)        # the cloud's answer, fresh for ttl_s
    path, source = await books.body(version=42, base=41)

A till asks ``GET /api/v1/stores/{id}/price-book/wire?base=<applied>`` for the signed
header of the newest book (the delta from its applied version), then the zstd body the
header's ``body_path`` names. Headers answer "what is newest", so the cloud's answer is
kept only ``ttl_s`` (5 s: a store's boxes polling together ask the cloud once, and a
new book reaches them seconds later than the cloud published it, against polls minutes
apart); a 200 is kept only when its signature verifies with the till's keys, for this
store. Each verified header vouches for one body (``body_sha256``, ``body_size``):
bodies are immutable per (version, base), downloaded once, checked against what the
header signed before they are kept (``<version>-<base|full>.zst``, the newest
``kept`` of them) and served as often as asked. A body no header vouched for since the
start is not fetched (``not_vouched``: the box asks the cloud).

Errors: ``BookUnavailable`` (network, http: the cloud's 5xx, no_keys, not_vouched) and
``BookRefused`` (signature, invalid, store, body_hash, too_large), counted by the
caller; the boxes then ask the cloud themselves.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.errors import AgentError
from edge_agent.peer.artifacts import Source
from edge_agent.peer.once import Once
from edge_agent.pos.cache import CacheError, verify
from edge_agent.pos.pricebook import MAX_BODY_BYTES, WIRE_KIND
from protocols.clock import Clock

logger = logging.getLogger(__name__)

BodyKey = tuple[int, int | None]  # (version, base version; None: the full book)


class BookError(AgentError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"price book: {reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BookUnavailable(BookError):
    """Not served this time (the cloud did not answer, or nothing vouches for it)."""


class BookRefused(BookError):
    """What the cloud sent does not verify: not kept, not served."""


@dataclass(frozen=True, slots=True)
class Reply:
    """The cloud's answer to a header request, relayed as it came."""

    status: int
    body: bytes
    content_type: str
    at: float  # clock.monotonic() when the cloud answered
    source: Source = "upstream"


class BookCache:
    def __init__(self, root: Path, *, store_id: str, client: httpx.AsyncClient,
                 keys: Callable[[], Mapping[str, Ed25519PublicKey]], clock: Clock,
                 ttl_s: float = 5.0, kept: int = 8) -> None:
        self.root = root
        self.store_id = store_id
        self.client = client
        self._keys = keys
        self._clock = clock
        self.ttl_s = ttl_s
        self.kept = kept
        self._headers: dict[int | None, Reply] = {}
        self._vouched: dict[BodyKey, tuple[str, int]] = {}  # -> (sha256, size)
        self._header_once: Once[int | None, Reply] = Once("book-header")
        self._body_once: Once[BodyKey, Path] = Once("book-body")

    @property
    def _base_path(self) -> str:
        return f"/api/v1/stores/{self.store_id}/price-book/wire"

    def path(self, version: int, base: int | None) -> Path:
        return self.root / f"{version}-{'full' if base is None else base}.zst"

    # ---- headers ---------------------------------------------------------------------

    async def header(self, base: int | None) -> Reply:
        cached = self._headers.get(base)
        if cached is not None and self._clock.monotonic() - cached.at < self.ttl_s:
            return replace(cached, source="cache")
        reply, started = await self._header_once.run(base, lambda: self._fetch_header(base))
        return reply if started else replace(reply, source="coalesced")

    async def _fetch_header(self, base: int | None) -> Reply:
        try:
            r = await self.client.get(self._base_path,
                                      params={} if base is None else {"base": base})
        except httpx.HTTPError as err:
            raise BookUnavailable("network", f"header: {err!r}") from err
        if r.status_code >= 500:
            raise BookUnavailable("http", f"header: HTTP {r.status_code}")
        reply = Reply(r.status_code, r.content, r.headers.get("content-type", ""),
                      self._clock.monotonic())
        if r.status_code == 200:
            self._vouch(r)
        if r.status_code in (200, 404):  # a book, or nothing published yet: both answers
            self._headers[base] = reply
        return reply

    def _vouch(self, r: httpx.Response) -> None:
        keys = self._keys()
        if not keys:
            raise BookUnavailable("no_keys", "the till trusts no key yet")
        try:
            payload: dict[str, Any] = verify(r.json()["header"], keys)
        except CacheError as err:
            raise BookRefused("signature", err.detail) from err
        except (ValueError, KeyError, TypeError) as err:
            raise BookRefused("invalid", f"wire reply: {err!r}") from err
        if payload.get("kind") != WIRE_KIND:
            raise BookRefused("invalid", f"not a price book header: {payload.get('kind')!r}")
        if payload.get("store_id") != self.store_id:
            raise BookRefused("store", f"book for {payload.get('store_id')!r}")
        try:
            version, base = int(payload["version"]), payload["base_version"]
            digest, size = str(payload["body_sha256"]), int(payload["body_size"])
        except (KeyError, TypeError, ValueError) as err:
            raise BookRefused("invalid", f"header fields: {err!r}") from err
        self._vouched[(version, None if base is None else int(base))] = (digest, size)

    # ---- bodies ----------------------------------------------------------------------

    async def body(self, version: int, base: int | None) -> tuple[Path, Source]:
        path = self.path(version, base)
        if await asyncio.to_thread(path.is_file):
            return path, "cache"
        vouched = self._vouched.get((version, base))
        if vouched is None:
            raise BookUnavailable("not_vouched", f"no verified header names v{version} "
                                  f"on base {base}")
        got, started = await self._body_once.run(
            (version, base), lambda: self._download(version, base, *vouched))
        return got, "upstream" if started else "coalesced"

    async def _download(self, version: int, base: int | None, digest: str, size: int) -> Path:
        if size > MAX_BODY_BYTES:
            raise BookRefused("too_large", f"v{version}: {size} bytes")
        final = self.path(version, base)
        tmp = final.with_name(f".{final.name}.part")
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        params = {"version": version} | ({} if base is None else {"base": base})
        sha = hashlib.sha256()
        got = 0
        # File writes and hashing block: each runs in a worker thread, off the loop.
        out: IO[bytes] = await asyncio.to_thread(open, tmp, "wb")
        try:
            async with self.client.stream("GET", f"{self._base_path}/body",
                                          params=params) as r:
                if r.status_code != 200:
                    raise BookUnavailable("http", f"body v{version}: HTTP {r.status_code}")
                async for chunk in r.aiter_bytes():
                    got += len(chunk)
                    if got > size:
                        raise BookRefused("too_large", f"body v{version}: over the "
                                          f"{size} bytes its header signs")
                    await asyncio.to_thread(_write, out, sha, chunk)
            await asyncio.to_thread(_close, out)
            if got != size or sha.hexdigest() != digest:
                raise BookRefused("body_hash", f"body v{version} is not the one its header "
                                  "signs")
            await asyncio.to_thread(os.replace, tmp, final)
        except httpx.HTTPError as err:
            raise BookUnavailable("network", f"body v{version}: {err!r}") from err
        finally:
            await asyncio.to_thread(_close, out)
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
        await asyncio.to_thread(self._evict)
        logger.info("store %s: price book v%d (base %s, %d bytes) cached for the store's "
                    "boxes", self.store_id, version, base, size)
        return final

    def _evict(self) -> None:
        """Keep the newest ``kept`` bodies (a delta chain and the full book the boxes are
        on); older ones are what no box asks for any more."""
        files = sorted((p for p in self.root.glob("*.zst")), key=lambda p: p.stat().st_mtime)
        for path in files[:-self.kept]:
            path.unlink(missing_ok=True)


def _write(out: IO[bytes], sha: Any, chunk: bytes) -> None:
    out.write(chunk)
    sha.update(chunk)


def _close(out: IO[bytes]) -> None:
    if not out.closed:
        out.flush()
        os.fsync(out.fileno())
        out.close()
