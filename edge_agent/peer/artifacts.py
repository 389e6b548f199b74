"""The primary's artifacts for the other boxes of its store (decision 0049).

    artifacts = PeerArtifacts(content=content.cache, updates=updates.cache)
    entry = await artifacts.get(sha256)       # in a cache, verified; ``entry.source``

Served from the caches the primary itself uses (``ArtifactCache``): a content asset
from ``[content]``'s (``<data_dir>/content/cas``), any other target from
``[updates]``'s (``<data_dir>/cas``), so what the primary applies itself and what it
serves are one copy, downloaded once. On a miss the signed manifest is fetched from the
cloud and verified (release key, the manifest of that sha256), and the bytes are
downloaded into the cache that manifest's target belongs to, checked by size and
sha256 as the primary checks its own (``ArtifactCache.fetch``). Concurrent requests for
the same sha256 wait for one download (``coalesced``); the cache's own lock also
joins the primary's own fetch of it.

Errors: ``ArtifactUnavailable`` (the cloud did not answer, or no cache here takes that
target: ``not_served``) and ``ArtifactRefused`` (what the cloud sent does not verify),
both counted by the caller. Cached bytes are served without hashing them again, as the
primary uses them itself: a box that receives them hashes them anyway.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_agent.kernel.artifacts import ArtifactCache, ArtifactUnavailable
from edge_agent.peer.once import Once
from protocols.artifacts import CONTENT_TARGET, ArtifactManifest

Source = Literal["cache", "upstream", "coalesced"]


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached, verified artifact: its bytes' path, its signed manifest document."""

    path: Path
    manifest: ArtifactManifest
    signed: Any
    source: Source


class PeerArtifacts:
    def __init__(self, *, content: ArtifactCache | None, updates: ArtifactCache | None) -> None:
        self.content = content
        self.updates = updates
        self._once: Once[str, Entry] = Once("artifact")

    def _caches(self) -> list[ArtifactCache]:
        return [c for c in (self.content, self.updates) if c is not None]

    def cache_for(self, target: str) -> ArtifactCache | None:
        return self.content if target == CONTENT_TARGET else self.updates

    def _cached(self, sha256: str) -> Entry | None:
        """Blocking (reads and verifies the manifest file): in a worker thread."""
        for cache in self._caches():
            found = cache.signed(sha256)
            if found is not None and cache.path(sha256).is_file():
                return Entry(cache.path(sha256), found[0], found[1], "cache")
        return None

    async def get(self, sha256: str) -> Entry:
        """The verified artifact, downloaded once from the cloud when no cache has it."""
        entry = await asyncio.to_thread(self._cached, sha256)
        if entry is not None:
            return entry
        got, started = await self._once.run(sha256, lambda: self._download(sha256))
        return got if started else Entry(got.path, got.manifest, got.signed, "coalesced")

    async def _download(self, sha256: str) -> Entry:
        caches = self._caches()
        if not caches:
            raise ArtifactUnavailable("not_served", sha256, "no artifact cache on this box")
        signed = await caches[0].api.manifest(sha256)
        manifest = caches[0].verify(sha256, signed)
        cache = self.cache_for(manifest.target)
        if cache is None:
            raise ArtifactUnavailable("not_served", sha256, f"no cache here takes target "
                                      f"{manifest.target!r}")
        path = await cache.fetch(sha256, target=manifest.target, signed=signed)
        return Entry(path, manifest, signed, "upstream")
