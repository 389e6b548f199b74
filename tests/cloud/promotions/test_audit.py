"""Sale audit: a sale the cloud cannot re-price, and a sale whose charged money differs
from its recorded money, are findings (stored once with their source device, counted,
summarised), not sales to skip (issue 11)."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models_loyalty import SaleAudit, SalePriceMismatch
from cloud.ingest.batch import BatchProcessor
from cloud.ingest.hooks import PostCommitHooks
from cloud.promotions import service
from cloud.promotions.metrics import PromotionMetrics
from cloud.promotions.reprice import RepriceHook, audit_summary
from pricing import ENGINE_VERSION, Basket, Catalog, Item, Line, Store, price
from protocols import topics
from protocols.clock import ManualClock

STORE = "store-1"
CATALOG = Catalog.of([Item(sku="milk", category="dairy", price=199),
                      Item(sku="bread", category="bakery", price=350)],
                     version=1, currency="EUR")
MARKDOWN = {"kind": "markdown", "id": "milk-10", "percent_bp": 1_000,
            "scope": {"skus": ["milk"]}}


def sale_event(event_id: str, data: dict[str, Any], *, device_id: str = "till-1",
               store_id: str = STORE) -> tuple[str, bytes]:
    body = {"v": 1, "id": event_id, "kind": "sale", "store_id": store_id,
            "device_id": device_id, "seq": 1, "ts": 1_767_225_600_000, "data": data}
    return topics.evt(store_id, "sale"), json.dumps(body).encode()


def priced_sale(sessions: sessionmaker[Session], clock: ManualClock) -> dict[str, Any]:
    """A sale's data exactly as a till priced it with the published snapshot."""
    with sessions.begin() as s:
        service.upsert_promotion(s, MARKDOWN, now_ms=clock.now_ms())
        pub = service.publish(s, now_ms=clock.now_ms(), currency="EUR")
        snapshot = service.store_snapshot(pub, STORE, "pos")
        version = pub.version
    basket = Basket(currency="EUR", lines=(Line(line_id="1", sku="milk", qty=2),
                                           Line(line_id="2", sku="bread", qty=1)))
    store = Store(id=STORE, currency="EUR")
    priced = price(basket, CATALOG, snapshot, None, clock.now_ms(), store)
    return {"channel": "pos", "snapshot_version": version, "engine_version": ENGINE_VERSION,
            "ruleset_hash": priced.ruleset_hash, "priced_at": clock.now_ms(),
            "basket": basket.model_dump(mode="json"),
            "catalog": CATALOG.model_dump(mode="json"), "member": None,
            "store": store.model_dump(mode="json"),
            "totals": {"subtotal": priced.subtotal, "total": priced.total,
                       "paid": priced.paid}}


def findings(sessions: sessionmaker[Session]) -> dict[tuple[str, str], SalePriceMismatch]:
    with sessions() as s:
        return {(r.event_id, r.reason): r for r in s.scalars(select(SalePriceMismatch))}


def test_every_sale_gets_an_audit_outcome_and_findings_are_kept_once(
    sessions: sessionmaker[Session], clock: ManualClock, registry: CollectorRegistry
) -> None:
    good = priced_sale(sessions, clock)
    paid = good["totals"]["paid"]
    hooks = PostCommitHooks(registry=registry)
    hooks.register("reprice", {"sale"}, RepriceHook(metrics=PromotionMetrics(registry)))
    proc = BatchProcessor(sessions, clock=clock, max_payload=65_536, hooks=hooks)
    no_basket = {"channel": "pos", "totals": {"total": 500, "paid": 500}}
    batch = [
        sale_event("good", good),
        sale_event("good-charged", {**good, "charged": paid}),
        sale_event("tampered", {**good, "totals": {**good["totals"], "total": 1}}),
        sale_event("bare", no_basket, device_id="till-2"),
        # The QR collected 500 less than the sale records (two carts, one coupon).
        sale_event("short", {**good, "charged": paid - 500}),
        sale_event("bare-short", {**no_basket, "charged": 0}, device_id="cart-03"),
        sale_event("other-engine", {**good, "engine_version": "0.9.0"}),
    ]
    proc.process(batch)
    proc.process(batch)  # redelivered: nothing new, nothing counted twice

    rows = findings(sessions)
    assert set(rows) == {("tampered", "totals"), ("bare", "no_basket"),
                         ("short", "charged_differs"), ("bare-short", "no_basket"),
                         ("bare-short", "charged_differs"),
                         ("other-engine", "engine_version")}
    bare = rows[("bare", "no_basket")]
    assert (bare.kind, bare.store_id, bare.device_id) == ("unaudited", STORE, "till-2")
    assert bare.reported == {"missing": ["basket", "snapshot_version"]}
    assert rows[("tampered", "totals")].kind == "mismatch"
    short = rows[("short", "charged_differs")]
    assert (short.kind, short.device_id) == ("mismatch", "till-1")
    assert short.expected == {"paid": paid - 500}
    assert short.reported == {"paid": paid, "charged": paid - 500}
    assert rows[("bare-short", "charged_differs")].reported == {"paid": 500, "charged": 0}
    assert rows[("bare-short", "no_basket")].device_id == "cart-03"
    assert rows[("other-engine", "engine_version")].kind == "unaudited"

    with sessions() as s:
        outcomes = {a.event_id: (a.outcome, a.reason, a.device_id)
                    for a in s.scalars(select(SaleAudit))}
    assert outcomes == {
        "good": ("audited", None, "till-1"), "good-charged": ("audited", None, "till-1"),
        "tampered": ("mismatch", "totals", "till-1"),
        "bare": ("unaudited", "no_basket", "till-2"),
        "short": ("audited", None, "till-1"),  # priced right, charged wrong
        "bare-short": ("unaudited", "no_basket", "cart-03"),
        "other-engine": ("unaudited", "engine_version", "till-1"),
    }

    sample = registry.get_sample_value
    # re-priced once each (good, good-charged, tampered, short), the redelivery not again
    assert sample("storefleet_repriced_sales_total") == 4
    assert sample("storefleet_sales_unaudited_total", {"reason": "no_basket"}) == 2
    assert sample("storefleet_sales_unaudited_total", {"reason": "engine_version"}) == 1
    assert sample("storefleet_reprice_mismatches_total", {"reason": "charged_differs"}) == 2
    assert sample("storefleet_reprice_mismatches_total", {"reason": "totals"}) == 1

    with sessions() as s:
        assert audit_summary(s, None) == {
            "sales": 7, "audited": 3, "mismatched": 1, "unaudited": 3, "pending": 0,
            "charged_differs": 2,
            "unaudited_reasons": {"engine_version": 1, "no_basket": 2}}
        assert audit_summary(s, frozenset({"store-9"}))["sales"] == 0


def test_a_sale_the_audit_has_not_seen_is_pending_not_audited(
    sessions: sessionmaker[Session], clock: ManualClock, registry: CollectorRegistry
) -> None:
    """Stored without the hook (it failed, or has not run yet): never counted as audited."""
    plain = BatchProcessor(sessions, clock=clock, max_payload=65_536)
    plain.process([sale_event("unseen", {"totals": {"paid": 100}})])
    with sessions() as s:
        summary = audit_summary(s, frozenset({STORE}))
    assert (summary["sales"], summary["audited"], summary["pending"]) == (1, 0, 1)


def test_a_sale_with_a_bad_payload_is_unaudited(
    sessions: sessionmaker[Session], clock: ManualClock, registry: CollectorRegistry
) -> None:
    hooks = PostCommitHooks(registry=registry)
    hooks.register("reprice", {"sale"}, RepriceHook(metrics=PromotionMetrics(registry)))
    proc = BatchProcessor(sessions, clock=clock, max_payload=65_536, hooks=hooks)
    proc.process([sale_event("neg", {"charged": -5, "totals": {"paid": 10}})])
    rows = findings(sessions)
    assert set(rows) == {("neg", "bad_payload")}
    assert rows[("neg", "bad_payload")].kind == "unaudited"
    with sessions() as s:
        assert audit_summary(s, None)["unaudited_reasons"] == {"bad_payload": 1}
