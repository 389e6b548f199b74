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
store_version, published_ms, effective_ms, catalog}`` with ``catalog`` a
``pricing.Catalog`` whose ``version`` is that version, so every sale priced with it
records it (``PricedBasket.catalog_version``). ``effective_ms`` is the wire header's
(the newest part's, else its publish time): the box holds a document, like a wire book,
until then (decision 0047).
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
from cloud.pricebook import wire
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
# Books of more items are never built as one document to announce: at ~60 bytes an
# item, 2,000 items are about INLINE_LIMIT already.
INLINE_ITEMS = 2_000


def publish(session: Session, *, items: list[Item], currency: str, now_ms: int,
            store_id: str | None = None, effective_ms: int | None = None,
            changes: bool = False, remove: tuple[str, ...] = ()) -> PriceBookVersion:
    """Freeze ``items`` as the next version, for the chain or (``store_id``) one store.

    ``changes``: ``items`` (upserts) and ``remove`` (skus) apply on top of the scope's
    latest version rather than replacing it; the stores receive only the difference
    either way (``wire``). ``effective_ms``: when stores start charging it."""
    if changes:
        latest = _latest(session, store_id or CHAIN, None)
        merged = {i["sku"]: i for i in (latest.items if latest else [])}
        for sku in remove:
            merged.pop(sku, None)
        merged.update({i.sku: i.model_dump(mode="json") for i in items})
        items = [Item.model_validate(i) for i in merged.values()]
    if not items:
        raise ValueError("invalid price book: no items")
    try:
        Catalog.of(items, version=0, currency=currency)  # one valid book: unique skus ...
    except ValidationError as err:
        raise ValueError(f"invalid price book: {err.errors()[0]['msg']}") from err
    if len({i.sku for i in items}) != len(items):
        raise ValueError("invalid price book: a sku appears twice")
    last = session.scalar(select(func.max(PriceBookVersion.version))) or 0
    row = PriceBookVersion(version=last + 1, scope=store_id or CHAIN, currency=currency,
                           items=[i.model_dump(mode="json") for i in items],
                           published_ms=now_ms, effective_ms=effective_ms)
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
    newest = max(parts, key=lambda p: p.version)
    catalog = Catalog(version=newest.version, currency=parts[0].currency,
                      items={sku: Item.model_validate(i) for sku, i in sorted(items.items())})
    return {
        "kind": DOCUMENT_KIND, "store_id": store_id, "version": newest.version,
        "chain_version": chain.version if chain else None,
        "store_version": own.version if own else None,
        "published_ms": max(p.published_ms for p in parts),
        # as on the wire (store_items): the box holds the book until then
        "effective_ms": newest.effective_ms or newest.published_ms,
        "catalog": catalog.model_dump(mode="json"),
    }


def store_items(session: Session, store_id: str, *, version: int | None = None
                ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """sku -> item (JSON) of the store's book as of ``version``, and its ``version``,
    ``currency``, ``published_ms`` and ``effective_ms``: the wire's inputs, without
    building a ``pricing.Catalog`` of a million items (``publish`` validated them)."""
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
    newest = max(parts, key=lambda p: p.version)
    published = max(p.published_ms for p in parts)
    return items, {"version": newest.version, "currency": newest.currency,
                   "published_ms": published,
                   "effective_ms": newest.effective_ms or newest.published_ms}


def store_wire(session: Session, store_id: str, signer: SnapshotSigner, *,
               version: int | None = None, base: int | None = None) -> wire.WireBook:
    """The store's book as signed header + zstd body: the delta from ``base`` when that
    is an older version of this store's book, else the full book."""
    items, meta = store_items(session, store_id, version=version)
    base_book = None
    if base is not None and base <= meta["version"]:
        try:
            old, old_meta = store_items(session, store_id, version=base)
        except NotFound:
            old_meta = None
        # A base the store never had (no book of its own or the chain's at that version)
        # cannot be patched: the full book.
        if old_meta is not None and old_meta["version"] == base:
            base_book = (base, old)
    return wire.build(signer, store_id=store_id, version=meta["version"],
                      currency=meta["currency"], effective_ms=meta["effective_ms"],
                      published_ms=meta["published_ms"], items=items, base=base_book)


def store_document(session: Session, store_id: str, signer: SnapshotSigner, *,
                   version: int | None = None) -> dict[str, Any]:
    return signer.sign(store_payload(session, store_id, version=version))


def announcement_document(session: Session, store_id: str, signer: SnapshotSigner
                          ) -> dict[str, Any]:
    """The signed document to announce: the whole book when it can ride inline, else
    only its version (the store downloads it from the wire, decision 0047). Counting
    the parts' items bounds the book without building and signing a million items
    that would not fit in a message anyway."""
    parts = [p for p in (_latest(session, CHAIN, None), _latest(session, store_id, None))
             if p is not None]
    if sum(len(p.items) for p in parts) <= INLINE_ITEMS:
        return store_document(session, store_id, signer)
    return {"payload": {"version": max(p.version for p in parts),
                        "published_ms": max(p.published_ms for p in parts)}}


async def announce(publisher: Publisher, documents: dict[str, dict[str, Any]], *,
                   signer: SnapshotSigner) -> list[str]:
    """Publish each store's announcement (retained, QoS 1); returns the stores that failed.

    Retained so that a box offline now learns of it at its next connect; the document
    rides inline when small enough, so a store whose REST path to the cloud is down
    still gets its prices. ``documents``: ``announcement_document`` of each store.
    """
    failed = []
    for store_id, document in sorted(documents.items()):
        payload = document["payload"]
        inline = document if "signature" in document else None
        msg = PriceBookAnnouncement(version=payload["version"],
                                    published_ms=payload["published_ms"],
                                    key_id=signer.key_id,
                                    path=API_PATH.format(store_id=store_id), document=inline)
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
