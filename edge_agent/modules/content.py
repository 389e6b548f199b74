"""Content (``[content]``, decision 0046): the store's signed content manifest, applied.

    [content]
    cloud_api = "https://hq.example/"
    cloud_api_token = "..."          # the store's device token
    trusted_keys = ["<base64>"]      # the cloud's signing keys: GET /api/v1/promotions/keys
    release_keys = ["<base64>"]      # its release keys: GET /api/v1/artifacts/keys
    cache_max_mb = 1024

The cloud publishes one manifest per store, retained on ``content/manifest``
(``protocols.content``). A manifest is taken only when a trusted key signed it, it
names this store and its version is above the applied one; otherwise it is refused:
counted in ``storefleet_content_manifests_total{result}``, logged, and reported to the
cloud (the ``content_status`` event's ``detail``, the store then shows ``refused``),
while the applied content keeps running.

A taken manifest's assets are fetched into ``<data_dir>/content/cas``
(``ArtifactCache``: each asset's own release-signed artifact manifest, sha256 and size
checked, downloads resumed); the cloud unreachable is retried every ``retry_s``, a
refused asset (tampered, unsigned, not a content asset) refuses the whole manifest.
Only when every asset is present does the switch happen: ``content/applied.json`` is
written to a temporary file, fsynced and renamed over the old one (``kill -9`` at any
point leaves the old manifest or the new one, never a mix), then the consumers
registered with ``on_applied`` are told. Assets no longer referenced become evictable
once the cache is over its bound. At start the applied manifest is read back (and
verified again), so the store runs its content with the cloud unreachable.

Each applied or refused manifest, and every start, is one ``content_status`` event
through the outbox (``protocols.content.ContentStatusReport``). The consumers say
what they actually took (``report_part``: the till its price book, the audio driver its
schedule, the screens their playlists; ``report_labels``: the shelf labels' counts);
those changes are reported too, gathered over ``REPORT_GATHER_S`` into one event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from pydantic import Field, SecretStr, ValidationError, field_validator

from edge_agent.errors import AgentError
from edge_agent.fsutil import write_atomically
from edge_agent.kernel.artifacts import (
    ArtifactApi,
    ArtifactCache,
    ArtifactRefused,
    ArtifactUnavailable,
)
from edge_agent.kernel.module import Module, ModuleSettings, PayloadHandler
from edge_agent.metrics import registry_scoped
from protocols.artifacts import CONTENT_TARGET
from protocols.content import (
    DETAIL_MAX,
    PARTS,
    ContentManifest,
    ContentStatusReport,
    LabelCounts,
    PartApplied,
)
from protocols.errors import StorefleetError
from protocols.signed import SignatureError, load_public_keys, verify_signed

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from edge_agent.kernel.module import Kernel
    from edge_agent.kernel.supervisor import Supervisor

logger = logging.getLogger(__name__)

MB = 1024 * 1024
APPLIED = "applied.json"
# What each consumer last reported: a restarted box says "since" the time it first took
# a version, not the time it started again.
PARTS_FILE = "parts.json"
# Consumers report at start and after each change, often several at once (a book and
# the labels it moved): gathered for this long into one content_status event.
REPORT_GATHER_S = 0.5


class ContentRefused(AgentError):
    """A manifest not applied (``reason`` is the metric label)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"content manifest refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class ContentSettings(ModuleSettings):
    cloud_api: str = Field(min_length=1)
    cloud_api_token: SecretStr | None = None
    # Keys that sign manifests (the cloud's signing key) and assets (its release key);
    # at least one each: no trust on first use.
    trusted_keys: tuple[str, ...] = Field(min_length=1)
    release_keys: tuple[str, ...] = Field(min_length=1)
    # Bound of <data_dir>/content/cas: a day's audio and a store's signage, with room.
    cache_max_mb: int = Field(default=1024, ge=1)
    # While the cloud is unreachable a missing asset is asked for again this often.
    retry_s: float = Field(default=5.0, gt=0)

    @field_validator("trusted_keys", "release_keys")
    @classmethod
    def _keys_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            load_public_keys(value)
        except SignatureError as err:
            raise ValueError(err.detail) from err
        return value


@dataclass(frozen=True, slots=True)
class AppliedContent:
    """What the store runs: the manifest, since when, and where each asset lies."""

    manifest: ContentManifest
    applied_ms: int
    signed: dict[str, Any]
    cas: Path

    def asset_path(self, sha256: str) -> Path:
        return self.cas / sha256


Listener = Callable[[AppliedContent], None]


class ContentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.manifests = Counter(
            "storefleet_content_manifests", "Content manifests by result (applied, current: "
            "the applied one again, and the refusals: unsigned, malformed, untrusted_key, "
            "signature, invalid, wrong_store, old_version, too_large, asset)", ["result"],
            registry=registry)
        self.listener_errors = Counter(
            "storefleet_content_listener_errors", "on_applied consumers that raised",
            registry=registry)


class Content(Module):
    name = "content"
    Settings = ContentSettings

    def __init__(self, kernel: Kernel, settings: ContentSettings) -> None:
        super().__init__(kernel, settings)
        self.root = kernel.data_dir / "content"
        self.keys = load_public_keys(settings.trusted_keys)
        token = settings.cloud_api_token
        self.max_bytes = settings.cache_max_mb * MB
        self.cache = ArtifactCache(
            self.root / "cas",
            api=ArtifactApi(settings.cloud_api,
                            token=token.get_secret_value() if token else None),
            keys=load_public_keys(settings.release_keys), registry=kernel.registry,
            max_bytes=self.max_bytes, keep=self._referenced)
        self.metrics = registry_scoped(kernel.registry, "content", ContentMetrics)
        self.applied: AppliedContent | None = None
        self._pending: tuple[ContentManifest, dict[str, Any]] | None = None
        self._wake = asyncio.Event()
        self._listeners: list[Listener] = []
        self._detail = ""  # the last refusal, reported until a manifest applies
        self._parts: dict[str, PartApplied] = {}
        self._labels: LabelCounts | None = None
        self._report_wanted = asyncio.Event()

    # ---- the API other modules use ----------------------------------------------------

    def on_applied(self, listener: Listener) -> None:
        """Call ``listener`` with every newly applied content (and at once with the
        applied one, if any)."""
        self._listeners.append(listener)
        if self.applied is not None:
            self._tell(listener, self.applied)

    def report_part(self, part: str, version: str | int, *, applied_ms: int,
                    detail: str = "") -> None:
        """A consumer took ``version`` of its part (``PARTS``) at ``applied_ms``; the
        cloud shows it per store. Same version and detail again: nothing to report."""
        if part not in PARTS:
            raise ValueError(f"unknown content part {part!r}; one of {', '.join(PARTS)}")
        now = PartApplied(version=str(version)[:64], applied_ms=applied_ms,
                          detail=detail[:DETAIL_MAX])
        old = self._parts.get(part)
        if old is not None and old.version == now.version:
            if old.detail == now.detail:
                return
            now = now.model_copy(update={"applied_ms": old.applied_ms})  # since then
        self._parts[part] = now
        self._report_wanted.set()

    def report_labels(self, counts: LabelCounts) -> None:
        """The store's shelf labels: current, pending, stale (reported when changed)."""
        if counts != self._labels:
            self._labels = counts
            self._report_wanted.set()

    # ---- declarations -----------------------------------------------------------------

    def content_handlers(self) -> Mapping[str, PayloadHandler]:
        return {"manifest": self._on_manifest}

    async def open(self) -> None:
        self.applied = await asyncio.to_thread(self._load)
        self._parts = await asyncio.to_thread(self._load_parts)

    def _load_parts(self) -> dict[str, PartApplied]:
        try:
            saved = json.loads((self.root / PARTS_FILE).read_text(encoding="utf-8"))
            return {k: PartApplied.model_validate(v) for k, v in saved.items() if k in PARTS}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as err:  # a disk fault or a hand edit
            self.metrics.manifests.labels(result="parts_unreadable").inc()
            logger.error("content: %s unreadable; parts are reported afresh: %s",
                         self.root / PARTS_FILE, err)
            return {}

    def _save_parts(self, parts: dict[str, PartApplied]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomically(self.root / PARTS_FILE, json.dumps(
            {k: p.model_dump() for k, p in parts.items()}).encode())

    async def start(self, tasks: Supervisor) -> None:
        tasks.start("content-apply", self._apply_loop)
        tasks.start("content-report", self._report_loop)
        await self._report()

    async def close(self) -> None:
        await self.cache.api.aclose()

    def diagnostics(self) -> dict[str, Any]:
        applied = self.applied
        return {"applied_version": applied.manifest.version if applied else None,
                "pending_version": self._pending[0].version if self._pending else None,
                "parts": {k: p.model_dump() for k, p in self._parts.items()},
                "labels": self._labels.model_dump() if self._labels else None}

    # ---- receiving --------------------------------------------------------------------

    def _load(self) -> AppliedContent | None:
        path = self.root / APPLIED
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            manifest = self._check(saved["signed"])
            return AppliedContent(manifest=manifest, applied_ms=int(saved["applied_ms"]),
                                  signed=saved["signed"], cas=self.cache.root)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, ContentRefused) as err:
            # A file we wrote and fsynced: only a disk fault or a hand edit gets here.
            self.metrics.manifests.labels(result="unreadable").inc()
            logger.error("content: %s unreadable, running without content: %s", path, err)
            return None

    def _check(self, signed: Any) -> ContentManifest:
        try:
            payload = verify_signed(signed, self.keys)
        except SignatureError as err:
            raise ContentRefused(err.reason, err.detail) from err
        try:
            manifest = ContentManifest.model_validate(payload)
        except ValidationError as err:
            raise ContentRefused("invalid", f"not a content manifest: "
                                 f"{err.errors()[0]['msg']}") from err
        if manifest.store_id != self.kernel.store_id:
            raise ContentRefused("wrong_store", f"manifest is for store {manifest.store_id}")
        return manifest

    async def _on_manifest(self, payload: bytes) -> None:
        if not payload:
            return  # the retained manifest was cleared: keep what runs
        try:
            signed = json.loads(payload)
            manifest = self._check(signed)
            applied = self.applied.manifest.version if self.applied else 0
            if manifest.version == applied:
                self.metrics.manifests.labels(result="current").inc()
                return  # the retained manifest again, after a reconnect
            if manifest.version < applied:
                raise ContentRefused("old_version", f"version {manifest.version}, "
                                     f"version {applied} is applied")
        except ValueError as err:
            await self._refuse(ContentRefused("malformed", f"not JSON: {err}"))
            return
        except ContentRefused as err:
            await self._refuse(err)
            return
        self._pending = (manifest, signed)
        self._wake.set()

    async def _refuse(self, err: ContentRefused) -> None:
        self.metrics.manifests.labels(result=err.reason).inc()
        logger.error("store %s: %s; the applied content keeps running",
                     self.kernel.store_id, err)
        self._detail = f"{err.reason}: {err.detail}"[:DETAIL_MAX]
        await self._report()

    # ---- applying ---------------------------------------------------------------------

    async def _apply_loop(self) -> None:
        while True:
            if self._pending is None:  # else resume it (this task restarted after a crash)
                await self._wake.wait()
            self._wake.clear()
            if self._pending is None:
                continue
            manifest, signed = self._pending
            try:
                await self._fetch_all(manifest)
            except ContentRefused as err:
                if self._pending is not None and self._pending[0] is manifest:
                    self._pending = None
                await self._refuse(err)
                continue
            except ArtifactUnavailable:  # logged by the cache; the partial file is kept
                # again after retry_s, or at once for a newer manifest
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.retry_s)
                continue
            if self._pending is not None and self._pending[0] is not manifest:
                continue  # a newer manifest came while fetching: apply that one
            self._pending = None
            await self._switch(manifest, signed)

    async def _fetch_all(self, manifest: ContentManifest) -> None:
        too_big = [a for a in manifest.assets if a.size > self.max_bytes]
        if too_big:
            a = too_big[0]
            raise ContentRefused("too_large", f"asset {a.name} ({a.sha256[:12]}) is {a.size} "
                                 f"bytes, larger than the cache bound of {self.max_bytes}")
        total = sum(a.size for a in {a.sha256: a for a in manifest.assets}.values())
        if total > self.max_bytes:
            raise ContentRefused("too_large", f"the assets take {total} bytes, more than the "
                                 f"cache bound of {self.max_bytes}")
        for asset in manifest.assets:
            try:
                path = await self.cache.fetch(asset.sha256, target=CONTENT_TARGET)
            except ArtifactRefused as err:  # counted and logged by the cache
                raise ContentRefused("asset", f"asset {asset.name}: {err.reason}: "
                                     f"{err.detail}") from err
            size = (await asyncio.to_thread(path.stat)).st_size
            if size != asset.size:
                raise ContentRefused("asset", f"asset {asset.name} is {size} bytes, the "
                                     f"manifest says {asset.size}")

    async def _switch(self, manifest: ContentManifest, signed: dict[str, Any]) -> None:
        applied = AppliedContent(manifest=manifest, applied_ms=self.kernel.clock.now_ms(),
                                 signed=signed, cas=self.cache.root)
        data = json.dumps({"signed": signed, "applied_ms": applied.applied_ms}).encode()
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        # Blocking file writes and fsyncs: in a worker thread, never on the event loop.
        await asyncio.to_thread(write_atomically, self.root / APPLIED, data)
        self.applied = applied
        self._detail = ""
        self.metrics.manifests.labels(result="applied").inc()
        logger.info("store %s: content manifest %d applied (%d assets, price book %s)",
                    self.kernel.store_id, manifest.version, len(manifest.assets),
                    manifest.price_book_version)
        for listener in list(self._listeners):
            self._tell(listener, applied)
        await self.cache.evict()  # what the old manifest alone used may go now
        await self._report()

    def _tell(self, listener: Listener, applied: AppliedContent) -> None:
        try:
            listener(applied)
        except Exception:  # one consumer's bug must not stop the others or the switch
            self.metrics.listener_errors.inc()
            logger.exception("content: on_applied consumer %r failed", listener)

    def _referenced(self) -> Collection[str]:
        """Assets the cache must keep: the applied manifest's and the pending one's."""
        keep = {a.sha256 for a in self.applied.manifest.assets} if self.applied else set()
        if self._pending is not None:
            keep |= {a.sha256 for a in self._pending[0].assets}
        return keep

    def _present(self, manifest: ContentManifest) -> int:
        return sum(self.cache.path(a.sha256).is_file() for a in manifest.assets)

    async def _report_loop(self) -> None:
        while True:
            await self._report_wanted.wait()
            await asyncio.sleep(REPORT_GATHER_S)
            self._report_wanted.clear()
            await self._report()
            try:
                await asyncio.to_thread(self._save_parts, dict(self._parts))  # fsync: thread
            except OSError as err:
                self.metrics.manifests.labels(result="parts_unsaved").inc()
                logger.error("content: parts not saved: %s", err)

    async def _report(self) -> None:
        applied = self.applied
        manifest = applied.manifest if applied else None
        present = await asyncio.to_thread(self._present, manifest) if manifest else 0
        report = ContentStatusReport(
            version=manifest.version if manifest else None,
            applied_ms=applied.applied_ms if applied else None,
            price_book_version=manifest.price_book_version if manifest else None,
            schedule_version=manifest.schedule_version if manifest else None,
            assets_present=present,
            assets_missing=(len(manifest.assets) - present) if manifest else 0,
            detail=self._detail, parts=dict(self._parts), labels=self._labels)
        try:
            await self.kernel.sink.emit_event("content_status", device_id="agent",
                                              data=report.model_dump(mode="json"))
        except StorefleetError:  # the outbox refused it: the next report carries the state
            self.metrics.manifests.labels(result="report_failed").inc()
            logger.exception("store %s: content_status not stored", self.kernel.store_id)


MODULE = Content
