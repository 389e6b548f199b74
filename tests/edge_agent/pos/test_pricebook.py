"""The till's signed price book (decision 0015): verified, installed atomically into the
catalog cache, tampered / foreign / older books refused and counted, verified again at
start."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cloud.promotions.signing import SnapshotSigner, raw_public
from edge_agent.pos.cache import CacheError, CacheMetrics, CatalogCache, load_keys
from edge_agent.pos.pricebook import PriceBookCache
from pricing import Catalog, Item
from protocols import encode
from protocols.clock import ManualClock
from protocols.messages import PriceBookAnnouncement

SIGNER = SnapshotSigner.generate()
KEYS = load_keys([base64.b64encode(raw_public(SIGNER.public_key)).decode()])


def signed(version: int, milk: int, *, store: str = "s1",
           signer: SnapshotSigner = SIGNER, **extra: Any) -> dict[str, Any]:
    catalog = Catalog.of([Item(sku="milk", category="dairy", price=milk),
                          Item(sku="bread", price=350)], version=version, currency="EUR")
    return signer.sign({"kind": "storefleet.pricebook", "store_id": store, "version": version,
                        "published_ms": 1, "catalog": catalog.model_dump(mode="json"),
                        **extra})


def make(tmp_path: Path, registry: CollectorRegistry,
         clock: ManualClock | None = None) -> PriceBookCache:
    return PriceBookCache(tmp_path / "pricebook.json", store_id="s1", keys=KEYS,
                          catalog=CatalogCache(tmp_path / "catalog.json"),
                          metrics=CacheMetrics(registry), clock=clock)


def count(registry: CollectorRegistry, result: str) -> float:
    return registry.get_sample_value("storefleet_pos_cache_refresh_total",
                                     {"what": "pricebook", "result": result}) or 0.0


async def test_install_refuse_and_reload(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    books = make(tmp_path, registry)
    assert await books.install(signed(3, 189))
    assert books.catalog.catalog is not None and books.catalog.catalog.items["milk"].price == 189
    assert not await books.install(signed(3, 189))  # the same version again: no-op

    tampered = copy.deepcopy(signed(4, 179))
    tampered["payload"]["catalog"]["items"]["milk"]["price"] = 1
    untrusted = signed(5, 1, signer=SnapshotSigner.generate())
    for doc, reason in ((tampered, "signature"), (untrusted, "signature"),
                        (signed(2, 1), "stale"), (signed(9, 1, store="s2"), "store")):
        with pytest.raises(CacheError) as err:
            await books.install(doc)
        assert err.value.reason == reason
    assert count(registry, "signature") == 2
    assert count(registry, "stale") == count(registry, "store") == 1
    assert books.version == 3 and books.catalog.catalog.items["milk"].price == 189

    # A new box process: the signed book is verified again and wins over an older catalog.
    again = make(tmp_path, CollectorRegistry())
    await again.catalog.install(Catalog.of([], version=1, currency="EUR"))  # provisioned
    assert await again.load()
    assert again.version == 3 and again.catalog.catalog is not None
    # Someone edits the cached file: refused at start, counted.
    doc = signed(7, 150)
    doc["payload"]["catalog"]["items"]["milk"]["price"] = 0
    (tmp_path / "pricebook.json").write_text(json.dumps(doc))
    reg = CollectorRegistry()
    third = make(tmp_path, reg)
    assert not await third.load()
    assert count(reg, "bad_cache") == 1


async def test_announcement_inline_and_repeats(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    books = make(tmp_path, registry)

    def announcement(doc: dict[str, Any] | None, version: int) -> bytes:
        return encode(PriceBookAnnouncement(version=version, published_ms=1, key_id="k",
                                            path="/api/v1/stores/s1/price-book",
                                            document=doc))

    assert await books.handle_announcement(announcement(signed(2, 150), 2), None)
    assert books.version == 2
    assert not await books.handle_announcement(announcement(signed(2, 150), 2), None)
    bad = signed(3, 140)
    bad["payload"]["catalog"]["items"]["bread"]["price"] = 0
    assert not await books.handle_announcement(announcement(bad, 3), None)
    assert not await books.handle_announcement(b"{not json", None)
    assert count(registry, "signature") == count(registry, "invalid") == 1
    assert books.version == 2


async def test_document_held_until_its_effective_time_across_a_restart(
        tmp_path: Path) -> None:
    """A document that says it takes effect later (decision 0047) is held, on disk too,
    not installed at once; a newer one effective now drops it."""
    clock = ManualClock()
    registry = CollectorRegistry()
    books = make(tmp_path, registry, clock)
    assert await books.install(signed(2, 150))  # no effective_ms (older clouds): at once
    due = clock.now_ms() + 60_000
    assert not await books.install(signed(3, 99, effective_ms=due))
    assert books.version == 2 and count(registry, "pending") == 1
    assert books.pending is not None and books.pending.version == 3
    assert not await books.install(signed(3, 99, effective_ms=due))  # a repeat: held
    assert count(registry, "pending") == 1

    again = make(tmp_path, CollectorRegistry(), clock)  # restarted, no cloud at all
    assert await again.load()
    assert again.version == 2 and again.pending is not None
    assert not await again.apply_due()
    clock.advance(60)
    assert await again.apply_due()
    assert again.version == 3 and again.catalog.catalog is not None
    assert again.catalog.catalog.items["milk"].price == 99
    assert not (tmp_path / "pricebook.held").exists()

    # Held v5 for later; v6 effective now is installed and drops it.
    assert not await again.install(signed(5, 80, effective_ms=clock.now_ms() + 60_000))
    assert (tmp_path / "pricebook.held").exists()
    assert await again.install(signed(6, 70))
    assert again.pending is None and not (tmp_path / "pricebook.held").exists()
    clock.advance(120)
    assert not await again.apply_due() and again.version == 6

    bad = signed(7, 1, effective_ms="soon")
    with pytest.raises(CacheError) as err:
        await again.install(bad)
    assert err.value.reason == "invalid"
