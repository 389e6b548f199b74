"""Signed price books from the cloud, installed into the till's ``CatalogCache``.

The cloud pushes the store's book in a retained ``PriceBookAnnouncement`` on
``sf/v1/{store}/content/pricebook`` (inline, or a path to GET) and serves it at
``GET /api/v1/stores/{id}/price-book``. Whatever the route, the Ed25519 signature
(the promotion snapshot keys) is what is trusted:

- a bad signature or an untrusted key (``signature``), a book for another store
  (``store``), an older version than the installed one (``stale``) or a malformed book
  (``invalid``) is refused, counted in ``storefleet_pos_cache_refresh_total{what=
  "pricebook", result=<reason>}`` and logged; the installed book stays;
- an accepted book is written atomically twice: the signed document
  (``pricebook.json``, verified again at start) and the catalog the till prices with
  (``CatalogCache.install``); at start the newer of the two wins, so a crash between
  the writes loses nothing. Sales priced afterwards record its version
  (``PricedBasket.catalog_version``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from edge_agent.pos.cache import (
    CacheError,
    CacheMetrics,
    CatalogCache,
    CloudApi,
    _read,
    _write_atomic,
    verify,
)
from pricing import Catalog
from protocols import decode
from protocols.errors import ProtocolError
from protocols.messages import PriceBookAnnouncement

logger = logging.getLogger(__name__)

DOCUMENT_KIND = "storefleet.pricebook"  # cloud.pricebook.service.DOCUMENT_KIND


class PriceBookCache:
    def __init__(self, path: Path, *, store_id: str, keys: Mapping[str, Ed25519PublicKey],
                 catalog: CatalogCache, metrics: CacheMetrics) -> None:
        self.path = path
        self.store_id = store_id
        self.keys = dict(keys)
        self.catalog = catalog
        self._metrics = metrics

    @property
    def version(self) -> int | None:
        return None if self.catalog.catalog is None else self.catalog.catalog.version

    async def load(self) -> bool:
        """After ``CatalogCache.load``: use the cached signed book if it is newer."""
        text = await asyncio.to_thread(_read, self.path)
        if text is None:
            return False
        try:
            catalog = self._accept(json.loads(text))
        except (CacheError, ValueError) as err:
            self._metrics.refresh.labels(what="pricebook", result="bad_cache").inc()
            logger.error("cached price book %s unusable: %s", self.path, err)
            return False
        if catalog is not None:
            self.catalog.catalog = catalog
        return True

    async def install(self, document: Mapping[str, Any]) -> bool:
        """Verify and install a signed book; False if it is the installed version.

        Raises ``CacheError`` (counted here) for anything refused."""
        try:
            catalog = self._accept(document)
        except CacheError as err:
            self._metrics.refresh.labels(what="pricebook", result=err.reason).inc()
            logger.warning("store %s: price book refused: %s", self.store_id, err)
            raise
        if catalog is None:
            self._metrics.refresh.labels(what="pricebook", result="unchanged").inc()
            return False
        await asyncio.to_thread(_write_atomic, self.path, json.dumps(document))
        await self.catalog.install(catalog)
        self._metrics.refresh.labels(what="pricebook", result="updated").inc()
        logger.info("store %s: price book v%d installed (%d items)", self.store_id,
                    catalog.version, len(catalog.items))
        return True

    async def refresh(self, api: CloudApi) -> bool:
        """Download the store's book; True when a newer one was installed."""
        try:
            return await self.install(await api.request(
                "GET", f"/api/v1/stores/{self.store_id}/price-book"))
        except CacheError as err:
            if err.reason == "nothing_published":  # a normal state: keep polling quietly
                self._metrics.refresh.labels(what="pricebook", result=err.reason).inc()
                logger.debug("store %s: no price book published yet", self.store_id)
            elif err.reason in ("network", "http"):  # refusals were counted by install
                self._metrics.refresh.labels(what="pricebook", result=err.reason).inc()
                logger.info("price book download failed: %s", err)
            return False

    async def handle_announcement(self, payload: bytes, api: CloudApi | None) -> bool:
        """A retained announcement: install the inline book, or download it."""
        try:
            msg = decode(payload, PriceBookAnnouncement)
        except ProtocolError as err:
            self._metrics.refresh.labels(what="pricebook", result="invalid").inc()
            logger.warning("bad price book announcement: %s", err)
            return False
        current = self.version
        if current is not None and msg.version <= current:
            return False  # a retained repeat, or older than what we run
        if msg.document is not None:
            try:
                return await self.install(msg.document)
            except CacheError:
                return False
        return api is not None and await self.refresh(api)

    def _accept(self, document: Mapping[str, Any]) -> Catalog | None:
        """The verified catalog, None if it is the installed version; ``CacheError``."""
        payload = verify(document, self.keys)
        if payload.get("kind") != DOCUMENT_KIND or payload.get("store_id") != self.store_id:
            raise CacheError("store", f"price book for {payload.get('store_id')!r}, "
                                      f"not {self.store_id!r}")
        try:
            catalog = Catalog.model_validate(payload["catalog"])
        except (KeyError, ValidationError) as err:
            raise CacheError("invalid", f"catalog: {err}") from err
        if catalog.version != payload.get("version"):
            raise CacheError("invalid", "catalog version differs from the document's")
        current = self.version
        if current is not None and catalog.version < current:
            raise CacheError("stale", f"version {catalog.version} is older than the "
                                      f"installed {current}")
        if current is not None and catalog.version == current:
            return None
        return catalog
