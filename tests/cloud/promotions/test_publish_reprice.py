"""Publishing (scope, regions, channels, immutability) and re-pricing received sales,
plus the pricing golden corpus replayed through the cloud's pricing path."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models_loyalty import PromotionPublication, SalePriceMismatch, Tier
from cloud.ingest.batch import BatchProcessor
from cloud.ingest.hooks import PostCommitHooks
from cloud.promotions import service
from cloud.promotions.metrics import PromotionMetrics
from cloud.promotions.reprice import RepriceHook, Repricer
from pricing import (
    ENGINE_VERSION,
    Basket,
    Catalog,
    Item,
    Line,
    Member,
    PromotionSnapshot,
    Store,
    price,
)
from protocols import topics
from protocols.clock import ManualClock
from tests.pricing.golden import replay_golden

CATALOG = Catalog.of([Item(sku="milk", category="dairy", price=199),
                      Item(sku="bread", category="bakery", price=350)],
                     version=1, currency="EUR")
MARKDOWN = {"kind": "markdown", "id": "milk-10", "percent_bp": 1_000,
            "scope": {"skus": ["milk"]}}
THRESHOLD = {"kind": "threshold", "id": "north-spend", "min_spend": 500, "amount_off": 100}


def publish(sessions: sessionmaker[Session], clock: ManualClock) -> PromotionPublication:
    with sessions.begin() as s:
        return service.publish(s, now_ms=clock.now_ms(), currency="EUR")


def test_scope_regions_channels_and_immutability(sessions: sessionmaker[Session],
                                                 clock: ManualClock) -> None:
    with sessions.begin() as s:
        service.set_store_region(s, "store-n1", "north")
        service.upsert_promotion(s, MARKDOWN, now_ms=clock.now_ms(), channels=["pos"])
        service.upsert_promotion(s, THRESHOLD, now_ms=clock.now_ms(), regions=["north"])
        s.add(Tier(name="gold", min_points=0, multiplier_bp=10_000, discount_bp=500, prices={}))
    v1 = publish(sessions, clock)
    ids = {
        (store, ch): [p.id for p in service.store_snapshot(v1, store, ch).promotions]
        for store in ("store-n1", "store-s1") for ch in ("pos", "online")
    }
    assert ids == {
        ("store-n1", "pos"): ["milk-10", "north-spend", "tier-gold-discount"],
        ("store-n1", "online"): ["north-spend", "tier-gold-discount"],
        ("store-s1", "pos"): ["milk-10", "tier-gold-discount"],
        ("store-s1", "online"): ["tier-gold-discount"],
    }
    # Editing and republishing makes v2; v1 still prices exactly as before.
    hash_v1 = service.store_snapshot(v1, "store-n1", "pos").ruleset_hash()
    with sessions.begin() as s:
        service.upsert_promotion(s, {**MARKDOWN, "percent_bp": 5_000}, now_ms=clock.now_ms())
    v2 = publish(sessions, clock)
    assert v2.version == v1.version + 1
    with sessions() as s:
        again = service.get_publication(s, v1.version)
        assert service.store_snapshot(again, "store-n1", "pos").ruleset_hash() == hash_v1


def sale_event(event_id: str, data: dict[str, Any]) -> tuple[str, bytes]:
    body = {"v": 1, "id": event_id, "kind": "sale", "store_id": "store-1", "seq": 1,
            "ts": 1_767_225_600_000, "data": data}
    return topics.evt("store-1", "sale"), json.dumps(body).encode()


def test_reprice_flags_tampered_total_and_accepts_correct(
    sessions: sessionmaker[Session], clock: ManualClock, registry: CollectorRegistry
) -> None:
    with sessions.begin() as s:
        service.upsert_promotion(s, MARKDOWN, now_ms=clock.now_ms())
    pub = publish(sessions, clock)
    snapshot = service.store_snapshot(pub, "store-1", "pos")
    basket = Basket(currency="EUR", lines=(Line(line_id="1", sku="milk", qty=3),
                                           Line(line_id="2", sku="bread", qty=1)))
    store = Store(id="store-1", currency="EUR")
    priced = price(basket, CATALOG, snapshot, None, clock.now_ms(), store)
    assert priced.total == 3 * 179 + 350  # 10 % off 199 = 179.1 -> 179 per unit

    def data(**totals: int) -> dict[str, Any]:
        return {"channel": "pos", "snapshot_version": pub.version, "engine_version":
                ENGINE_VERSION, "ruleset_hash": priced.ruleset_hash,
                "priced_at": clock.now_ms(), "basket": basket.model_dump(mode="json"),
                "catalog": CATALOG.model_dump(mode="json"), "member": None,
                "store": store.model_dump(mode="json"),
                "totals": {"subtotal": priced.subtotal, "total": priced.total,
                           "paid": priced.paid, **totals}}

    hooks = PostCommitHooks(registry=registry)
    hooks.register("reprice", {"sale"}, RepriceHook(metrics=PromotionMetrics(registry)))
    proc = BatchProcessor(sessions, clock=clock, max_payload=65_536, hooks=hooks)
    proc.process([sale_event("good", data()),
                  sale_event("tampered", data(total=priced.total - 50)),
                  sale_event("old-version", {**data(), "snapshot_version": 999})])
    proc.process([sale_event("tampered", data(total=priced.total - 50))])  # redelivered
    with sessions() as s:
        rows = {r.event_id: r for r in s.scalars(select(SalePriceMismatch))}
    assert set(rows) == {"tampered", "old-version"}
    assert rows["tampered"].reason == "totals"
    assert rows["tampered"].expected["total"] == priced.total  # type: ignore[index]
    assert rows["tampered"].reported["total"] == priced.total - 50  # type: ignore[index]
    assert rows["old-version"].reason == "unknown_snapshot"
    sample = registry.get_sample_value
    assert sample("storefleet_reprice_mismatches_total", {"reason": "totals"}) == 1
    assert sample("storefleet_repriced_sales_total") == 2  # good, tampered; a redelivery not again


def test_golden_corpus_through_the_cloud_pricing_path(sessions: sessionmaker[Session],
                                                      clock: ManualClock) -> None:
    """Each case's snapshot is stored as a publication (JSON in the database), read back,
    cut to the store's snapshot and priced by the Repricer."""
    repricer = Repricer()
    versions: dict[str, int] = {}

    def cloud_price(basket: Basket, catalog: Catalog, snapshot: PromotionSnapshot,
                    member: Member | None, now: int, store: Store) -> Any:
        key = snapshot.ruleset_hash()
        with sessions.begin() as s:
            if key not in versions:
                versions[key] = len(versions) + 1
                s.add(PromotionPublication(
                    version=versions[key], currency=snapshot.currency, published_ms=now,
                    entries=[{"promotion": p.model_dump(mode="json"), "stores": None,
                              "channels": ["pos", "cart", "online"]}
                             for p in snapshot.promotions]))
                s.flush()
            pub = service.get_publication(s, versions[key])
            rebuilt = service.store_snapshot(pub, store.id, "pos")
            assert rebuilt.promotions == snapshot.promotions
            return repricer.price(pub, store_id=store.id, channel="pos", basket=basket,
                                  catalog=catalog, member=member, now_ms=now, store=store)

    assert replay_golden(cloud_price) >= 89
