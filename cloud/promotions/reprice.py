"""Auditing received sales: re-pricing with the exact snapshot version they were priced
with, and checking the money charged against the money recorded.

The ingest hook (``RepriceHook``) takes a ``sale`` event (see ``cloud.loyalty.sale``),
loads the publication it names, rebuilds that store's and channel's snapshot, prices
the basket with ``pricing.price`` and compares the totals the till reported. Every sale
gets one ``sale_audits`` row (its outcome) and zero or more findings, ``sale_price_
mismatches`` rows keyed by (event id, reason), with the store and the source device;
a redelivered sale adds nothing and counts nothing again:

==============  ==================  ================================================
outcome / kind  reason              counted in
==============  ==================  ================================================
``mismatch``    ``totals``,         ``storefleet_reprice_mismatches_total{reason}``
                ``ruleset_hash``
``unaudited``   ``no_basket``,      ``storefleet_sales_unaudited_total{reason}``
                ``engine_version``,
                ``unknown_snapshot``,
                ``unpriceable``,
                ``bad_payload``
``mismatch``    ``charged_differs`` ``storefleet_reprice_mismatches_total{reason}``
                (``charged`` given and not ``totals.paid``; a finding beside the
                pricing outcome, which stays ``audited`` when the totals agree)
==============  ==================  ================================================

A sale that cannot be re-priced is a finding, not a sale to skip: a fleet where most
sales carry no basket must not read as "0 mismatches". ``audit_summary`` counts the
outcomes for ``GET /api/v1/promotions/audit``.

The catalog comes with the sale (the prices the till used): re-pricing checks what the
promotions did to those prices, not the price book itself.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Set
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.db.models import Event as EventRow
from cloud.db.models_loyalty import PromotionPublication, SaleAudit, SalePriceMismatch
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

AUDITED, MISMATCH, UNAUDITED = "audited", "mismatch", "unaudited"
UNAUDITED_REASONS = ("no_basket", "engine_version", "unknown_snapshot", "unpriceable",
                     "bad_payload")
MISMATCH_REASONS = ("totals", "ruleset_hash", "charged_differs")
FINDING_KINDS = (MISMATCH, UNAUDITED)

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


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the audit found wrong with a sale (a ``SalePriceMismatch`` row)."""

    reason: str
    version: int | None = None
    expected: dict[str, Any] | None = None
    reported: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return UNAUDITED if self.reason in UNAUDITED_REASONS else MISMATCH


class RepriceHook:
    """Callable for ``PostCommitHooks.register("reprice", {"sale"}, hook)``."""

    def __init__(self, *, metrics: PromotionMetrics, repricer: Repricer | None = None) -> None:
        self.metrics = metrics
        self.repricer = repricer or Repricer()

    def __call__(self, session: Session, event: Event, now_ms: int) -> None:
        if session.get(SaleAudit, (event.store_id, event.id)) is not None:
            # A duplicate (hooks see redelivered events too): audited once already, so
            # neither the work nor the counters happen again.
            return
        sale: SaleData | None = None
        pricing: Finding | None
        try:
            sale = SaleData.model_validate(event.data)
        except ValidationError as err:
            pricing = Finding("bad_payload", reported={"error": str(err.errors()[0]["msg"])})
        else:
            pricing = self._reprice(session, event, sale)
        findings = [f for f in (pricing, self._charged(event, sale)) if f is not None]
        raw_totals = event.data.get("totals")
        paid = raw_totals.get("paid") if isinstance(raw_totals, dict) else None
        audit = dialect_insert(session, SaleAudit).values(
            event_id=event.id, store_id=event.store_id, device_id=event.device_id,
            outcome=AUDITED if pricing is None else pricing.kind,
            reason=None if pricing is None else pricing.reason,
            paid=paid if isinstance(paid, int) and not isinstance(paid, bool) else None,
            charged=None if sale is None else sale.charged, detected_ms=now_ms,
        ).on_conflict_do_nothing(index_elements=["store_id", "event_id"])
        session.execute(audit)
        for finding in findings:
            self._flag(session, event, finding, now_ms=now_ms)

    def _reprice(self, session: Session, event: Event, sale: SaleData) -> Finding | None:
        """None when the cloud re-priced the sale to the same totals; else the finding."""
        if sale.basket is None or sale.snapshot_version is None:
            missing = [k for k in ("basket", "snapshot_version") if getattr(sale, k) is None]
            return Finding("no_basket", sale.snapshot_version, reported={"missing": missing})
        if sale.engine_version not in (None, ENGINE_VERSION):
            # Another engine version may legitimately price differently; this cloud
            # cannot judge it. A finding, so a fleet on mixed versions is visible.
            return Finding("engine_version", sale.snapshot_version,
                           {"engine_version": ENGINE_VERSION},
                           {"engine_version": sale.engine_version})
        version = sale.snapshot_version
        publication = session.get(PromotionPublication, version)
        if publication is None:
            return Finding("unknown_snapshot", version)
        reported = {k: v for k, v in (event.data.get("totals") or {}).items() if k in TOTAL_KEYS}
        try:
            snapshot, _ = self.repricer.ruleset(publication, event.store_id, sale.channel)
            if sale.ruleset_hash is not None and sale.ruleset_hash != snapshot.ruleset_hash():
                return Finding("ruleset_hash", version, {"ruleset_hash": snapshot.ruleset_hash()},
                               {"ruleset_hash": sale.ruleset_hash})
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
            return Finding("unpriceable", version, reported={"error": str(err)[:500]})
        self.metrics.repriced.inc()
        expected = {k: getattr(priced, k) for k in TOTAL_KEYS}
        if any(expected[k] != v for k, v in reported.items()) or not reported:
            return Finding("totals", version, expected, reported)
        return None

    @staticmethod
    def _charged(event: Event, sale: SaleData | None) -> Finding | None:
        """A finding when the tenders collected other money than the sale records."""
        if sale is None or sale.charged is None:
            return None
        totals = event.data.get("totals")
        paid = totals.get("paid") if isinstance(totals, dict) else None
        if paid == sale.charged:
            return None
        return Finding("charged_differs", sale.snapshot_version, {"paid": sale.charged},
                       {"paid": paid, "charged": sale.charged})

    def _flag(self, session: Session, event: Event, finding: Finding, *, now_ms: int) -> None:
        stmt = dialect_insert(session, SalePriceMismatch).values(
            event_id=event.id, reason=finding.reason, kind=finding.kind,
            store_id=event.store_id, device_id=event.device_id,
            snapshot_version=finding.version, expected=finding.expected,
            reported=finding.reported, detected_ms=now_ms,
        ).on_conflict_do_nothing(index_elements=["store_id", "event_id", "reason"]).returning(
            SalePriceMismatch.event_id)
        if session.execute(stmt).first() is None:
            return  # a redelivered sale: found and counted the first time
        if finding.kind == UNAUDITED:
            self.metrics.unaudited.labels(reason=finding.reason).inc()
            logger.warning("store %s: sale %s from %s not audited: %s (%s)", event.store_id,
                           event.id, event.device_id, finding.reason, finding.reported)
        else:
            self.metrics.mismatches.labels(reason=finding.reason).inc()
            logger.warning("store %s: sale %s from %s: %s (version %s, expected %s, "
                           "reported %s)", event.store_id, event.id, event.device_id,
                           finding.reason, finding.version, finding.expected,
                           finding.reported)


def audit_summary(session: Session, stores: Set[str] | None) -> dict[str, Any]:
    """Counts of the sales stored and of what the audit concluded (``stores``: None = all).

    ``pending`` = sales with no audit outcome yet: the hook has not run on them, or failed
    on them (``storefleet_ingest_hook_errors_total{hook="reprice"}``), or they were stored
    before the audit kept outcomes (migration 0007). ``charged_differs`` overlaps the
    others: it is about the money collected, they are about the prices.
    """
    sales_q = select(func.count()).select_from(EventRow).where(EventRow.kind == "sale")
    outcomes_q = select(SaleAudit.outcome, SaleAudit.reason, func.count()).group_by(
        SaleAudit.outcome, SaleAudit.reason)
    charged_q = select(func.count()).select_from(SalePriceMismatch).where(
        SalePriceMismatch.reason == "charged_differs")
    if stores is not None:
        scope = sorted(stores)
        sales_q = sales_q.where(EventRow.store_id.in_(scope))
        outcomes_q = outcomes_q.where(SaleAudit.store_id.in_(scope))
        charged_q = charged_q.where(SalePriceMismatch.store_id.in_(scope))
    counts = {AUDITED: 0, MISMATCH: 0, UNAUDITED: 0}
    reasons: dict[str, int] = {}
    for outcome, reason, n in session.execute(outcomes_q):
        counts[outcome] = counts.get(outcome, 0) + n
        if outcome == UNAUDITED and reason is not None:
            reasons[reason] = reasons.get(reason, 0) + n
    sales = session.scalar(sales_q) or 0
    return {
        "sales": sales,
        "audited": counts[AUDITED],
        "mismatched": counts[MISMATCH],
        "unaudited": counts[UNAUDITED],
        "pending": max(0, sales - sum(counts.values())),
        "charged_differs": session.scalar(charged_q) or 0,
        "unaudited_reasons": dict(sorted(reasons.items())),
    }
