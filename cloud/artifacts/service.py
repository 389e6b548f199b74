"""Upload, sign, record and look up artifacts (decision 0036).

``ArtifactService.upload`` streams the bytes into the storage (hashed as they arrive,
bounded in size), signs the manifest with the release key and records it in one
transaction. Uploading the same bytes for the same target and version again is a no-op
that answers the stored manifest; the same target and version for other bytes is an
``ArtifactConflict`` (a version names one thing, or a box could not tell which it runs).
Database work runs in a worker thread (SQLAlchemy here is synchronous).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.artifacts.errors import ArtifactConflict, InvalidArtifact, UnknownArtifact
from cloud.artifacts.storage import ArtifactStorage, Blob
from cloud.db.models_artifacts import Artifact
from cloud.promotions.signing import SnapshotSigner
from cloud.settings import CloudSettings
from protocols.artifacts import ArtifactManifest
from protocols.clock import Clock

logger = logging.getLogger(__name__)


def release_signer(settings: CloudSettings) -> SnapshotSigner:
    """The release key of ``settings.release_key_file``, or an ephemeral one (warned)."""
    if settings.release_key_file is None:
        logger.warning("artifacts: no STOREFLEET_RELEASE_KEY_FILE; signing artifact "
                       "manifests with an ephemeral key that changes at every start")
        return SnapshotSigner.generate()
    path = Path(settings.release_key_file)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as err:
        raise ValueError(f"release_key_file: cannot load {path}: {err}") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"release_key_file: {path} is not an Ed25519 private key")
    return SnapshotSigner(key)


class ArtifactMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.uploads = Counter(
            "storefleet_artifact_uploads", "Artifact uploads by result "
            "(stored, unchanged, conflict, invalid, too_large, cut)", ["result"],
            registry=registry)
        self.served_bytes = Counter(
            "storefleet_artifact_served_bytes", "Artifact content bytes handed to the "
            "server for boxes (ranges included; a download cut short counts what was sent)",
            registry=registry)


@dataclass(frozen=True, slots=True)
class Uploaded:
    signed: dict[str, Any]
    created: bool


class ArtifactService:
    def __init__(self, *, storage: ArtifactStorage, signer: SnapshotSigner,
                 writer: sessionmaker[Session], clock: Clock, max_bytes: int,
                 metrics: ArtifactMetrics) -> None:
        self.storage = storage
        self.signer = signer
        self._writer = writer
        self._clock = clock
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def upload(self, chunks: AsyncIterator[bytes], *, kind: str, target: str,
                     version: str) -> Uploaded:
        created_ms = self._clock.now_ms()
        # Check what can be checked before reading a byte: a bad target costs no upload.
        self._manifest(sha256="0" * 64, size=0, kind=kind, target=target, version=version,
                       created_ms=created_ms)
        blob = await self.storage.put(chunks, max_bytes=self.max_bytes)
        manifest = self._manifest(sha256=blob.sha256, size=blob.size, kind=kind,
                                  target=target, version=version, created_ms=created_ms)
        signed = self.signer.sign(manifest.model_dump(mode="json"))
        try:
            result = await asyncio.to_thread(self._record, manifest, signed)
        except ArtifactConflict:
            await self._drop_if_unreferenced(blob)
            self.metrics.uploads.labels(result="conflict").inc()
            raise
        self.metrics.uploads.labels(result="stored" if result.created else "unchanged").inc()
        if result.created:
            logger.info("artifact %s stored: %s %s (%d bytes)", blob.sha256, target, version,
                        blob.size)
        return result

    @staticmethod
    def _manifest(**fields: Any) -> ArtifactManifest:
        try:
            return ArtifactManifest(**fields)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}"
                                 for e in err.errors())
            raise InvalidArtifact(problems) from err

    def _record(self, manifest: ArtifactManifest, signed: dict[str, Any]) -> Uploaded:
        try:
            with self._writer.begin() as session:
                found = self._existing(session, manifest)
                if found is not None:
                    return found
                session.add(Artifact(sha256=manifest.sha256, kind=manifest.kind.value,
                                     target=manifest.target, version=manifest.version,
                                     size=manifest.size, created_ms=manifest.created_ms,
                                     signed=signed))
        except IntegrityError:
            # A concurrent upload of the same sha256 or target/version won the insert.
            with self._writer.begin() as session:
                found = self._existing(session, manifest)
            if found is None:
                raise
            return found
        return Uploaded(signed=signed, created=True)

    @staticmethod
    def _existing(session: Session, manifest: ArtifactManifest) -> Uploaded | None:
        same_version = session.scalar(select(Artifact).where(
            Artifact.target == manifest.target, Artifact.version == manifest.version))
        if same_version is not None and same_version.sha256 != manifest.sha256:
            raise ArtifactConflict(f"{manifest.target} {manifest.version} is already "
                                   f"artifact {same_version.sha256}",
                                   sha256=same_version.sha256)
        same_bytes = same_version or session.get(Artifact, manifest.sha256)
        if same_bytes is None:
            return None
        if same_bytes.target != manifest.target or same_bytes.version != manifest.version:
            raise ArtifactConflict(f"these bytes are already {same_bytes.target} "
                                   f"{same_bytes.version}", sha256=same_bytes.sha256)
        return Uploaded(signed=dict(same_bytes.signed), created=False)

    async def _drop_if_unreferenced(self, blob: Blob) -> None:
        def referenced() -> bool:
            with self._writer() as session:
                return session.get(Artifact, blob.sha256) is not None

        if not await asyncio.to_thread(referenced):
            await self.storage.delete(blob.sha256)

    def signed(self, session: Session, sha256: str) -> dict[str, Any]:
        row = session.get(Artifact, sha256)
        if row is None:
            raise UnknownArtifact(sha256)
        return dict(row.signed)

    def list(self, session: Session, *, kind: str | None = None,
             target: str | None = None, limit: int = 100) -> list[Artifact]:
        query = select(Artifact).order_by(Artifact.created_ms.desc(), Artifact.sha256)
        if kind is not None:
            query = query.where(Artifact.kind == kind)
        if target is not None:
            query = query.where(Artifact.target == target)
        return list(session.scalars(query.limit(limit)))
