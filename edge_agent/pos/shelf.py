"""Shelf labels follow the till: every e-shelf label shows what the till charges for one
unit, computed by the one pricing engine from the till's verified price book and
promotion snapshot (decision 0018).

The shelf price of a sku is ``pricing.price`` of a one-unit basket with no member, at the
store's local time, against the snapshot's **markdowns** only: markdowns are the unit
prices everyone pays (time windows and weekdays included). Basket-level deals (spend
thresholds, buy X get Y, bundles, coupons) and member or tier prices depend on the rest
of the basket or on who buys, so a label cannot promise them; near-expiry markdowns apply
to marked lots, not to the shelf. The label's promo text names the markdown that set the
price.

``ShelfSync`` recomputes the book when the till installs a new price book or snapshot
(after a price-book delta, only the skus it changed: ``changes``, decision 0047) and
every ``interval_s`` (so time windows open and close on the shelf as at the till),
off the event loop; it hands the e-shelf-label drivers a new version only when a price
or text changed, and the drivers send jobs only for the labels that changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from edge_agent.drivers.capabilities import LabelSink
from pricing import Basket, Catalog, Line, PromotionSnapshot, Store, compile, price
from protocols.clock import Clock
from protocols.esl import PROMO_MAX, PriceBook, PriceBookItem

logger = logging.getLogger(__name__)

SHELF_KINDS = frozenset({"markdown"})


LabelTarget = LabelSink  # what the sync needs of an e-shelf-label driver (capability)


def shelf_items(catalog: Catalog, snapshot: PromotionSnapshot | None, *, store: Store,
                now_ms: int, skus: Iterable[str] | None = None) -> dict[str, PriceBookItem]:
    """sku -> what its label shows: the one-unit, no-member price under the markdowns
    (of every item, or of those of ``skus`` in the catalog)."""
    markdowns = tuple(p for p in (snapshot.promotions if snapshot else ())
                      if p.kind in SHELF_KINDS
                      and getattr(p, "near_expiry_within_min", None) is None)
    names = {p.id: (p.name or p.id) for p in markdowns}
    ruleset = compile(PromotionSnapshot(version=snapshot.version if snapshot else 0,
                                        currency=catalog.currency, promotions=markdowns))
    items: dict[str, PriceBookItem] = {}
    wanted = catalog.items if skus is None else {s for s in skus if s in catalog.items}
    for sku in sorted(wanted):
        basket = Basket(id=f"shelf-{sku}", currency=catalog.currency,
                        lines=(Line(line_id="1", sku=sku, qty=1),))
        priced = price(basket, catalog, ruleset, None, now_ms, store)
        text = " + ".join(names[a.promotion_id] for a in priced.applied
                          if a.promotion_id in names and a.amount > 0)
        items[sku] = PriceBookItem(price_minor=priced.total, currency=catalog.currency,
                                   promo_text=text[:PROMO_MAX] or None)
    return items


class ShelfMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.syncs = Counter(
            "storefleet_shelf_sync", "shelf-label price computations, by result "
            "(pushed: new prices to the labels; unchanged; failed)", ["result"],
            registry=registry)
        self.version = Gauge(
            "storefleet_shelf_price_version", "version of the shelf prices last pushed",
            registry=registry)
        self.computed = Counter(
            "storefleet_shelf_skus_computed", "shelf prices computed, by sku (after a "
            "price-book delta only its skus)", registry=registry)


class ShelfSync:
    """Keeps the store's e-shelf labels on the till's prices."""

    def __init__(self, *, inputs: Callable[[], tuple[Catalog | None, PromotionSnapshot | None]],
                 labels: Callable[[], Iterable[LabelTarget]], store: Store, clock: Clock,
                 registry: CollectorRegistry, interval_s: float = 60.0,
                 poll_s: float = 1.0,
                 changes: Callable[[int], list[str] | None] | None = None) -> None:
        """``changes(version)``: the skus the price book changed since ``version``, None
        when unknown (a full book): then every label is recomputed."""
        self._inputs = inputs
        self._labels = labels
        self._store = store
        self._clock = clock
        self._interval_s = interval_s
        self._poll_s = poll_s
        self.metrics = ShelfMetrics(registry)
        self.items: dict[str, PriceBookItem] = {}
        self.version = 0
        self._seen: tuple[int, int | None, int] | None = None  # catalog, snapshot, targets
        self._applied: dict[str, int] = {}  # device id -> version it took
        self._changes = changes
        # what self.items was computed from: catalog version, snapshot version, and when
        # it was last computed whole (time windows move every label)
        self._basis: tuple[int, int | None] | None = None
        self._whole_at = float("-inf")

    async def sync_once(self, *, force: bool = False) -> bool:
        """Recompute and push if anything changed; True when labels were given a book."""
        catalog, snapshot = self._inputs()
        if catalog is None:
            return False
        targets = list(self._labels())
        skus = self._changed_skus(catalog, snapshot)
        try:
            fresh = await asyncio.to_thread(shelf_items, catalog, snapshot, store=self._store,
                                            now_ms=self._clock.now_ms(), skus=skus)
        except Exception as err:  # a catalog the engine refuses: keep the labels as they are
            self.metrics.syncs.labels(result="failed").inc()
            logger.error("shelf prices not computed: %s", err)
            return False
        self.metrics.computed.inc(len(fresh))
        if skus is None:
            items = fresh
            self._whole_at = self._clock.monotonic()
        else:
            items = dict(self.items)
            for sku in skus:
                if sku in fresh:
                    items[sku] = fresh[sku]
                else:
                    items.pop(sku, None)
        self._basis = (catalog.version, snapshot.version if snapshot else None)
        changed = items != self.items
        if changed:
            # seconds since the epoch: increasing across restarts, as the labels' book
            # ignores a version it has already seen
            self.version = max(self.version + 1, self._clock.now_ms() // 1000)
            self.items = items
        pending = [t for t in targets if self._applied.get(t.device_id) != self.version]
        if not pending:
            self.metrics.syncs.labels(result="unchanged").inc()
            return False
        book = PriceBook(version=self.version, currency=catalog.currency, items=items)
        took = 0
        for target in pending:
            try:
                result = target.apply_price_book(book)
            except Exception as err:  # one bad driver must not stop the others; retried
                logger.warning("shelf prices v%d refused by %s: %s", self.version,
                               target.device_id, err)
                self.metrics.syncs.labels(result="failed").inc()
                continue
            took += 1
            self._applied[target.device_id] = self.version
            logger.info("shelf prices v%d to %s: %s", self.version, target.device_id, result)
        if took:
            self.metrics.syncs.labels(result="pushed").inc()
            self.metrics.version.set(self.version)
        return took > 0

    def _changed_skus(self, catalog: Catalog, snapshot: PromotionSnapshot | None
                      ) -> list[str] | None:
        """The skus to recompute, None for all: only a new price book on the same
        snapshot, whose changes are known, within an interval of the last whole pass."""
        basis = self._basis
        if (self._changes is None or basis is None or not self.items
                or basis[1] != (snapshot.version if snapshot else None)
                or basis[0] == catalog.version
                or self._clock.monotonic() - self._whole_at >= self._interval_s):
            return None
        return self._changes(basis[0])

    async def run(self) -> None:
        """Forever: on a new price book, snapshot or label driver, and every interval."""
        due = 0.0
        while True:
            catalog, snapshot = self._inputs()
            seen = (id(catalog), snapshot.version if snapshot else None,
                    hash(tuple(sorted(t.device_id for t in self._labels()))))
            now = self._clock.monotonic()
            if catalog is not None and (seen != self._seen or now >= due):
                self._seen = seen
                due = now + self._interval_s
                await self.sync_once()
            await asyncio.sleep(self._poll_s)


def label_targets(drivers: Iterable[object]) -> list[LabelTarget]:
    """The drivers among ``drivers`` that drive e-shelf labels (the ``LabelSink``
    capability; the agent asks its supervisor: ``find(LABEL_SINK)``)."""
    return [d for d in drivers if isinstance(d, LabelSink)]
