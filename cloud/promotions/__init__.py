"""Promotions in the cloud: HQ definitions, signed versioned snapshots, re-pricing.

==============  ==================================================================
``service``     definitions (engine promotion + stores / regions / channels),
                ``publish`` (immutable versions), per-store snapshots and documents
``signing``     Ed25519 ``SnapshotSigner`` and ``verify_document``; key rotation
``announce``    the retained ``PromotionsAnnouncement`` per store
``reprice``     ``Repricer`` (the cloud's pricing path) and the ingest ``RepriceHook``
==============  ==================================================================
"""

from cloud.promotions.errors import (
    InvalidDefinition,
    PromotionError,
    SignatureInvalid,
    UnknownPromotion,
)
from cloud.promotions.metrics import PromotionMetrics
from cloud.promotions.signing import SnapshotSigner, verify_document

__all__ = [
    "InvalidDefinition",
    "PromotionError",
    "PromotionMetrics",
    "SignatureInvalid",
    "SnapshotSigner",
    "UnknownPromotion",
    "verify_document",
]
