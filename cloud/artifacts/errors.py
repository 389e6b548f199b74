"""Errors of cloud.artifacts.

    ArtifactError               base (a CloudError; ``reason`` is the metric label)
     +-- InvalidArtifact        kind, target or version that do not fit together
     +-- ArtifactTooLarge       an upload over ``max_artifact_bytes`` (``limit``)
     +-- ArtifactConflict       that target and version already name other bytes, or
                                these bytes are already another target/version
     +-- UnknownArtifact        no artifact with that sha256
     +-- ArtifactStoreError     the blob store failed (``operation``, ``code``)
          +-- StoreRefused      it answered no: bucket missing, credentials refused,
                                access denied (the API answers 502)
          +-- StoreUnreachable  no answer: endpoint down, timeouts (the API answers 503)
"""

from __future__ import annotations

from cloud.errors import CloudError


class ArtifactError(CloudError):
    """Base error of cloud.artifacts."""

    reason = "artifact"


class InvalidArtifact(ArtifactError):
    reason = "invalid_artifact"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ArtifactTooLarge(ArtifactError):
    reason = "artifact_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"artifact larger than {limit} bytes")
        self.limit = limit


class ArtifactConflict(ArtifactError):
    reason = "artifact_conflict"

    def __init__(self, detail: str, *, sha256: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.sha256 = sha256  # the artifact already stored


class UnknownArtifact(ArtifactError):
    reason = "not_found"

    def __init__(self, sha256: str) -> None:
        super().__init__(f"no artifact {sha256}")
        self.sha256 = sha256


class ArtifactStoreError(ArtifactError):
    """The blob store failed ``operation`` (put, get, delete); ``code`` is what it said
    (an S3 error code such as ``NoSuchBucket``) or the kind of failure."""

    reason = "store"

    def __init__(self, detail: str, *, operation: str, code: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.operation = operation
        self.code = code


class StoreRefused(ArtifactStoreError):
    reason = "store_refused"


class StoreUnreachable(ArtifactStoreError):
    reason = "store_unreachable"
