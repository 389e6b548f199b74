"""Announcing a published version to stores (retained, so a box that was offline
learns it at its next connect).

Topic ``sf/v1/{store_id}/content/promotions``: beside the content manifest rather than
inside it, because the manifest is one retained message owned by content publishing;
the agent subscribes to ``content/+`` to receive both (see decision record 0007).
"""

from __future__ import annotations

import logging

from cloud.db.models_loyalty import PromotionPublication
from cloud.errors import PublishError
from cloud.promotions.documents import ScopedPublication
from cloud.promotions.signing import SnapshotSigner
from cloud.publish import Publisher
from protocols import encode, topics
from protocols.messages import PromotionsAnnouncement

logger = logging.getLogger(__name__)

API_PATH = "/api/v1/stores/{store_id}/promotions/snapshot"


def promotions_topic(store_id: str) -> str:
    return f"{topics.store_root(store_id)}/content/promotions"


async def announce(publisher: Publisher, publication: PromotionPublication,
                   store_ids: list[str], *, signer: SnapshotSigner) -> list[str]:
    """Publish the announcement to each store; returns the stores that failed."""
    failed = []
    scoped = ScopedPublication(publication)  # the hashes once per scope, not per store
    for store_id in store_ids:
        msg = PromotionsAnnouncement(
            version=publication.version, published_ms=publication.published_ms,
            key_id=signer.key_id, path=API_PATH.format(store_id=store_id),
            ruleset_hashes=scoped.ruleset_hashes(store_id),
        )
        try:
            await publisher.publish(promotions_topic(store_id), encode(msg), qos=1, retain=True)
        except PublishError as err:
            logger.warning("promotions: could not announce v%d to %s: %s",
                           publication.version, store_id, err)
            failed.append(store_id)
    return failed
