"""A store's signed promotion document built from per-scope parts (decision 0060) is
byte for byte the canonical JSON of ``store_payload``, signed; one build per scope, the
newest versions kept, a new version never answered from an older one's parts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models_loyalty import PromotionPublication
from cloud.promotions import documents, service
from cloud.promotions.documents import ScopedPublication, StoreDocuments
from cloud.promotions.signing import SnapshotSigner, canonical, verify_document
from protocols.clock import ManualClock

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

COUPON = {"kind": "coupon", "id": "cp-dairy", "code": "DAIRY10", "percent_bp": 1000,
          "scope": {"categories": ["milk_carton"]}}
RULE: dict[str, Any] = {"id": "dairy-shelf", "shelf": "D-1", "dwell_ms": 3000,
                        "coupon": {"engine_code": "DAIRY10", "title": "10% off dairy",
                                   "title_zh": "乳制品9折"}}  # non-ASCII: UTF-8, not \\u


def _publish(sessions: sessionmaker[Session], clock: ManualClock,
             percent_bp: int = 500) -> PromotionPublication:
    with sessions.begin() as s:
        for store, region in (("S1", "north"), ("S2", "north"), ("S3", "south")):
            service.set_store_region(s, store, region)
        service.upsert_promotion(s, {"kind": "markdown", "id": "all-milk",
                                     "percent_bp": percent_bp, "scope": {"skus": ["milk"]}},
                                 now_ms=clock.now_ms())
        service.upsert_promotion(s, {"kind": "markdown", "id": "north-bread",
                                     "amount_off": 20, "scope": {"skus": ["bread"]}},
                                 now_ms=clock.now_ms(), regions=["north"])
        service.upsert_promotion(s, COUPON, now_ms=clock.now_ms(), stores=["S3"],
                                 channels=["pos"], trigger_rules=[RULE])
        return service.publish(s, now_ms=clock.now_ms(), currency="EUR")


def test_documents_equal_the_signed_payload_and_are_built_once_per_scope(
        sessions: sessionmaker[Session], clock: ManualClock) -> None:
    publication = _publish(sessions, clock)
    signer = SnapshotSigner.generate()
    scoped = ScopedPublication(publication)
    # S1 and S2 share a scope (north), S3 has its own, S9 (unknown) and S8 the chain's
    for store in ("S1", "S2", "S3", "S9", "S8"):
        expected = service.store_payload(publication, store)
        assert scoped.payload_bytes(store) == canonical(expected)
        document = scoped.signed_document(store, signer)
        assert verify_document(document, signer.trusted()) == expected
        assert set(json.loads(document)) == {"payload", "key_id", "signature"}
        assert scoped.ruleset_hashes(store) == expected["ruleset_hashes"]
    assert "乳制品9折".encode() in scoped.signed_document("S3", signer)
    assert len(scoped._parts) == 3  # north, S3's, the chain's: not one per store
    # the stores' documents differ where their scopes do, and only there
    s1, s2, s3 = (service.store_payload(publication, s) for s in ("S1", "S2", "S3"))
    assert s1["ruleset_hashes"] == s2["ruleset_hashes"] != s3["ruleset_hashes"]
    assert "trigger_rules" in s1 and s1["trigger_rules"]["rules"] == []


def test_scopes_past_the_bound_are_built_again(sessions: sessionmaker[Session],
                                               clock: ManualClock,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents, "MAX_SCOPES", 1)
    publication = _publish(sessions, clock)
    scoped = ScopedPublication(publication)
    for store in ("S1", "S3", "S1"):
        assert scoped.payload_bytes(store) == canonical(service.store_payload(publication,
                                                                              store))
        assert len(scoped._parts) == 1


def test_versions_are_kept_apart_and_only_the_newest_are_kept(
        sessions: sessionmaker[Session], clock: ManualClock) -> None:
    first = _publish(sessions, clock, percent_bp=500)
    second = _publish(sessions, clock, percent_bp=700)
    assert second.version == first.version + 1
    docs = StoreDocuments(keep=1)
    loads: list[int] = []

    def load(pub: PromotionPublication) -> Callable[[], PromotionPublication]:
        def loader() -> PromotionPublication:
            loads.append(pub.version)
            return pub
        return loader

    assert docs.get(first.version, load(first)).publication is first
    assert docs.get(first.version, load(first)).publication is first
    assert docs.get(second.version, load(second)).publication is second
    assert docs.get(first.version, load(first)).publication is first  # built again
    assert loads == [first.version, second.version, first.version]

    def missing() -> PromotionPublication:
        raise LookupError("no such version")

    with pytest.raises(LookupError):
        docs.get(99, missing)
    assert docs.get(first.version, load(first)).publication is first  # not replaced
    assert loads == [first.version, second.version, first.version]
