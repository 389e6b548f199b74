"""Re-pricing received sales with the exact snapshot version they were priced with.

The ingest hook (``RepriceHook``) takes a ``sale`` event (see ``cloud.loyalty.sale``),
loads the publication it names, rebuilds that store's and channel's snapshot, prices
the basket with ``pricing.price`` and compares the totals the till reported. Any
difference, and any sale that cannot be re-priced (unknown version, ruleset hash that
does not match, basket the engine refuses), becomes one ``sale_price_mismatches`` row
(keyed by event id: a redelivered sale adds nothing) and counts in
``storefleet_reprice_mismatches_total{reason}``.

The catalog comes with the sale (the prices the till used): re-pricing checks what the
promotions did to those prices, not the price book itself.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import PromotionPublication, SalePriceMismatch
from cloud.db.writes import dialect_insert
from cloud.loyalty.sale import TOTAL_KEYS, SaleData
from cloud.promotions.metrics import PromotionMetrics
from cloud.promotions.service import store_snapshot
from pricing import (
    ENGINE_VERSION,
    Basket,
    Catalog,
    Member,
    PricedBasket,
    PricingError,
    PromotionSnapshot,
    Ruleset,
    Store,
    compile,
    price,
)
from protocols.messages import Event

logger = logging.getLogger(__name__)

# Compiled rulesets kept per (version, store, channel); publications are immutable, so
# entries never go stale. 256 covers a busy hour of distinct stores at ~1 ms each.
CACHE_SIZE = 256


class Repricer:
    """The cloud's pricing path: publication -> store snapshot -> compiled -> price()."""

    def __init__(self, *, cache_size: int = CACHE_SIZE) -> None:
        self._cache: OrderedDict[tuple[int, str, str], tuple[PromotionSnapshot, Ruleset]] = (
            OrderedDict())
        self._size = cache_size

    def ruleset(self, publication: PromotionPublication, store_id: str,
                channel: str) -> tuple[PromotionSnapshot, Ruleset]:
        key = (publication.version, store_id, channel)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        snapshot = store_snapshot(publication, store_id, channel)
        value = (snapshot, compile(snapshot))
        self._cache[key] = value
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return value

    def price(self, publication: PromotionPublication, *, store_id: str, channel: str,
              basket: Basket, catalog: Catalog, member: Member | None, now_ms: int,
              store: Store) -> PricedBasket:
        _, ruleset = self.ruleset(publication, store_id, channel)
        return price(basket, catalog, ruleset, member, now_ms, store)


class RepriceHook:
    """Callable for ``PostCommitHooks.register("reprice", {"sale"}, hook)``."""

    def __init__(self, *, metrics: PromotionMetrics, repricer: Repricer | None = None) -> None:
        self.metrics = metrics
        self.repricer = repricer or Repricer()

    def __call__(self, session: Session, event: Event, now_ms: int) -> None:
        try:
            sale = SaleData.model_validate(event.data)
        except ValidationError as err:
            self._flag(session, event, None, "bad_payload", None,
                       {"error": str(err.errors()[0]["msg"])}, now_ms=now_ms)
            return
        if sale.basket is None or sale.snapshot_version is None:
            self.metrics.skipped.labels(reason="no_basket").inc()
            return
        if sale.engine_version not in (None, ENGINE_VERSION):
            # Another engine version may legitimately price differently; this cloud
            # cannot judge it. Counted so a fleet on mixed versions is visible.
            self.metrics.skipped.labels(reason="engine_version").inc()
            return
        version = sale.snapshot_version
        publication = session.get(PromotionPublication, version)
        if publication is None:
            self._flag(session, event, version, "unknown_snapshot", None, None, now_ms=now_ms)
            return
        reported = {k: v for k, v in (event.data.get("totals") or {}).items() if k in TOTAL_KEYS}
        try:
            snapshot, _ = self.repricer.ruleset(publication, event.store_id, sale.channel)
            if sale.ruleset_hash is not None and sale.ruleset_hash != snapshot.ruleset_hash():
                self._flag(session, event, version, "ruleset_hash",
                           {"ruleset_hash": snapshot.ruleset_hash()},
                           {"ruleset_hash": sale.ruleset_hash}, now_ms=now_ms)
                return
            priced = self.repricer.price(
                publication, store_id=event.store_id, channel=sale.channel,
                basket=Basket.model_validate(sale.basket),
                catalog=Catalog.model_validate(sale.catalog),
                member=None if sale.member is None else Member.model_validate(sale.member),
                now_ms=sale.priced_at if sale.priced_at is not None else event.ts,
                store=Store.model_validate(sale.store or {"id": event.store_id,
                                                          "currency": publication.currency}),
            )
        except (ValidationError, PricingError) as err:
            self._flag(session, event, version, "unpriceable", None,
                       {"error": str(err)[:500]}, now_ms=now_ms)
            return
        self.metrics.repriced.inc()
        expected = {k: getattr(priced, k) for k in TOTAL_KEYS}
        if any(expected[k] != v for k, v in reported.items()) or not reported:
            self._flag(session, event, version, "totals", expected, reported, now_ms=now_ms)

    def _flag(self, session: Session, event: Event, version: int | None, reason: str,
              expected: dict[str, Any] | None, reported: dict[str, Any] | None, *,
              now_ms: int) -> None:
        stmt = dialect_insert(session, SalePriceMismatch).values(
            event_id=event.id, store_id=event.store_id, snapshot_version=version,
            reason=reason, expected=expected, reported=reported, detected_ms=now_ms,
        ).on_conflict_do_nothing(index_elements=["event_id"]).returning(
            SalePriceMismatch.event_id)
        if session.execute(stmt).first() is not None:
            self.metrics.mismatches.labels(reason=reason).inc()
            logger.warning("store %s: sale %s re-priced with version %s: %s (expected %s, "
                           "reported %s)", event.store_id, event.id, version, reason,
                           expected, reported)
