"""Publishing price books and cutting a store's signed document.

A publication is an immutable ``price_book_versions`` row: the chain's book (``scope`` =
``CHAIN``) or one store's overrides (``scope`` = store id). Versions are one sequence
across scopes. A store's book is the latest chain book overlaid with the latest book of
that store (same sku: the store's price wins), and its version is the newer of the two:
whichever HQ publishes, every store it reaches sees a higher version, so "never install
an older book" is a plain integer comparison at the till.

The document a store downloads (``GET /api/v1/stores/{id}/price-book``) or receives in a
``PriceBookAnnouncement`` is ``{payload, key_id, signature}`` (``SnapshotSigner``, the
promotion snapshot key), payload = ``{kind, store_id, version, chain_version,
store_version, published_ms, catalog}`` with ``catalog`` a ``pricing.Catalog`` whose
``version`` is that version, so every sale priced with it records it
(``PricedBasket.catalog_version``).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import PriceBookVersion
from cloud.errors import PublishError
from cloud.loyalty.errors import Conflict, NotFound
from cloud.promotions.signing import SnapshotSigner
from cloud.publish import Publisher
from pricing import Catalog, Item
from protocols import encode, topics
from protocols.messages import PriceBookAnnouncement

logger = logging.getLogger(__name__)

CHAIN = "*"  # not a valid store id, so it can never collide with one
DOCUMENT_KIND = "storefleet.pricebook"
API_PATH = "/api/v1/stores/{store_id}/price-book"
# Inline the signed document in the retained announcement up to this size; beyond it
# stores download it. 128 KiB: half the default payload cap, room for the envelope.
INLINE_LIMIT = 128 * 1024


def publish(session: Session, *, items: list[Item], currency: str, now_ms: int,
            store_id: str | None = None) -> PriceBookVersion:
    """Freeze ``items`` as the next version, for the chain or (``store_id``) one store."""
    try:
        Catalog.of(items, version=0, currency=currency)  # one valid book: unique skus ...
    except ValidationError as err:
        raise ValueError(f"invalid price book: {err.errors()[0]['msg']}") from err
    if len({i.sku for i in items}) != len(items):
        raise ValueError("invalid price book: a sku appears twice")
    last = session.scalar(select(func.max(PriceBookVersion.version))) or 0
    row = PriceBookVersion(version=last + 1, scope=store_id or CHAIN, currency=currency,
                           items=[i.model_dump(mode="json") for i in items],
                           published_ms=now_ms)
    try:
        with session.begin_nested():
            session.add(row)
    except sa_exc.IntegrityError as err:
        # Two publishes at once on PostgreSQL: the loser retries (the API answers 409).
        raise Conflict(f"price book version {last + 1} was published concurrently; "
                       "publish again") from err
    return row


def _latest(session: Session, scope: str, version: int | None) -> PriceBookVersion | None:
    stmt = select(PriceBookVersion).where(PriceBookVersion.scope == scope)
    if version is not None:
        stmt = stmt.where(PriceBookVersion.version <= version)
    return session.scalar(stmt.order_by(PriceBookVersion.version.desc()).limit(1))


def store_payload(session: Session, store_id: str, *, version: int | None = None
                  ) -> dict[str, Any]:
    """The store's book as of ``version`` (None: the latest); ``NotFound`` if none."""
    chain, own = _latest(session, CHAIN, version), _latest(session, store_id, version)
    if chain is None and own is None:
        raise NotFound("price book for store", store_id)
    parts = [p for p in (chain, own) if p is not None]  # the store's prices win
    currencies = {p.currency for p in parts}
    if len(currencies) != 1:
        raise Conflict(f"store {store_id!r}: chain and store price books differ in "
                       f"currency ({sorted(currencies)})")
    items: dict[str, dict[str, Any]] = {}
    for part in parts:
        items.update({i["sku"]: i for i in part.items})
    effective = max(p.version for p in parts)
    catalog = Catalog(version=effective, currency=parts[0].currency,
                      items={sku: Item.model_validate(i) for sku, i in sorted(items.items())})
    return {
        "kind": DOCUMENT_KIND, "store_id": store_id, "version": effective,
        "chain_version": chain.version if chain else None,
        "store_version": own.version if own else None,
        "published_ms": max(p.published_ms for p in parts),
        "catalog": catalog.model_dump(mode="json"),
    }


def store_document(session: Session, store_id: str, signer: SnapshotSigner, *,
                   version: int | None = None) -> dict[str, Any]:
    return signer.sign(store_payload(session, store_id, version=version))


async def announce(publisher: Publisher, documents: dict[str, dict[str, Any]], *,
                   signer: SnapshotSigner) -> list[str]:
    """Publish each store's announcement (retained, QoS 1); returns the stores that failed.

    Retained so that a box offline now learns of it at its next connect; the document
    rides inline when small enough, so a store whose REST path to the cloud is down
    still gets its prices.
    """
    failed = []
    for store_id, document in sorted(documents.items()):
        payload = document["payload"]
        msg = PriceBookAnnouncement(version=payload["version"],
                                    published_ms=payload["published_ms"],
                                    key_id=signer.key_id,
                                    path=API_PATH.format(store_id=store_id), document=document)
        body = encode(msg)
        if len(body) > INLINE_LIMIT:
            body = encode(msg.model_copy(update={"document": None}))
        try:
            await publisher.publish(topics.content_pricebook(store_id), body, qos=1,
                                    retain=True)
        except PublishError as err:
            logger.warning("price book v%d not announced to %s: %s", payload["version"],
                           store_id, err)
            failed.append(store_id)
    return failed
