"""Shelf labels on the till's prices (edge_agent.pos.shelf): the one-unit, no-member price
under the snapshot's markdowns, time windows as the till sees them, pushed to real ESL
drivers only when something changed."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter

from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.esl import EslDriver
from edge_agent.drivers.testing import FakeContext
from edge_agent.pos.shelf import ShelfSync, label_targets, shelf_items
from pricing import Basket, Catalog, Item, Line, Promotion, PromotionSnapshot, Store, compile, price
from protocols.clock import ManualClock
from protocols.esl import PriceBook

STORE = Store(id="S001", currency="EUR", utc_offset_min=60)
CATALOG = Catalog.of([Item(sku="bread", name="Bread", category="bakery", price=350),
                      Item(sku="milk", name="Milk", category="dairy", price=199),
                      Item(sku="coffee", name="Coffee", category="drinks", price=899),
                      Item(sku="tv", name="TV", category="electronics", price=49_900)],
                     version=7, currency="EUR")
_PROMO: TypeAdapter[Promotion] = TypeAdapter(Promotion)
PROMOS: list[dict[str, Any]] = [
    {"kind": "markdown", "id": "bakery-20", "name": "Bakery -20%", "percent_bp": 2_000,
     "scope": {"categories": ["bakery"]}},
    # happy hour, 17:00-19:00 store time
    {"kind": "markdown", "id": "milk-hh", "name": "Happy hour", "amount_off": 50,
     "scope": {"skus": ["milk"]}, "conditions": {"time_from_min": 17 * 60,
                                                  "time_until_min": 19 * 60}},
    # not shelf prices: they depend on the basket or on who buys
    {"kind": "buy_x_get_y", "id": "coffee-2for1", "buy": {"skus": ["coffee"]}, "buy_qty": 1},
    {"kind": "threshold", "id": "spend-100", "min_spend": 10_000, "amount_off": 1_000},
    {"kind": "tier_price", "id": "gold-tv", "new_price": 39_900, "scope": {"skus": ["tv"]},
     "conditions": {"tiers": ["gold"]}},
    {"kind": "markdown", "id": "bread-expiring", "percent_bp": 5_000,
     "scope": {"skus": ["bread"]}, "near_expiry_within_min": 120},
]
SNAPSHOT = PromotionSnapshot(version=3, currency="EUR",
                             promotions=tuple(_PROMO.validate_python(p) for p in PROMOS))
NOON = 1_767_268_800_000  # 2026-01-01 12:00 UTC = 13:00 store time
EVENING = NOON + 9 * 1_800_000  # 17:30 store time, 16:30 UTC (outside the window in UTC)


def till_unit_price(sku: str, now_ms: int, snapshot: PromotionSnapshot = SNAPSHOT) -> int:
    basket = Basket(id="till", currency="EUR", lines=(Line(line_id="1", sku=sku, qty=1),))
    return price(basket, CATALOG, compile(snapshot), None, now_ms, STORE).total


def test_labels_show_markdowns_only_as_the_engine_prices_them() -> None:
    noon = shelf_items(CATALOG, SNAPSHOT, store=STORE, now_ms=NOON)
    assert {s: i.price_minor for s, i in noon.items()} == {
        "bread": 280, "milk": 199, "coffee": 899, "tv": 49_900}
    assert noon["bread"].promo_text == "Bakery -20%" and noon["milk"].promo_text is None
    # 17:30 store time: the happy hour is on the shelf as it is at the till
    evening = shelf_items(CATALOG, SNAPSHOT, store=STORE, now_ms=EVENING)
    assert evening["milk"].price_minor == 149 and evening["milk"].promo_text == "Happy hour"
    # a one-unit basket at the till costs what the label says, wherever the basket-level
    # deals do not reach one unit (the TV alone crosses the spend threshold: a label
    # cannot promise that, the receipt shows it)
    for sku in ("bread", "milk", "coffee"):
        assert evening[sku].price_minor == till_unit_price(sku, EVENING)
    assert till_unit_price("tv", EVENING) == 48_900 and evening["tv"].price_minor == 49_900


def test_no_snapshot_means_catalog_prices() -> None:
    items = shelf_items(CATALOG, None, store=STORE, now_ms=NOON)
    assert {s: i.price_minor for s, i in items.items()} == {
        sku: item.price for sku, item in CATALOG.items.items()}
    assert all(i.currency == "EUR" and i.promo_text is None for i in items.values())


def esl(ctx: FakeContext, device_id: str) -> EslDriver:
    return EslDriver(DeviceConfig(device_id=device_id, family="esl", options={
        "labels": {f"{device_id}-L{i}": sku for i, sku in enumerate(sorted(CATALOG.items))}}),
        ctx)


class Broken:
    device_id = "broken"
    family = "esl"

    def apply_price_book(self, book: PriceBook) -> dict[str, Any]:
        raise RuntimeError("radio down")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOON)


async def test_sync_pushes_on_change_only_and_follows_the_clock(clock: ManualClock) -> None:
    ctx = FakeContext(clock=clock)
    a, b = esl(ctx, "AP1"), esl(ctx, "AP2")
    inputs: dict[str, Any] = {"catalog": CATALOG, "snapshot": SNAPSHOT}
    targets: list[Any] = [a, Broken(), b]
    registry = CollectorRegistry()
    sync = ShelfSync(inputs=lambda: (inputs["catalog"], inputs["snapshot"]),
                     labels=lambda: label_targets(targets), store=STORE, clock=clock,
                     registry=registry)

    def shown(drv: EslDriver) -> dict[str, int]:
        assert drv.book.book is not None
        return {s: i.price_minor for s, i in drv.book.book.items.items()}

    def count(result: str) -> float:
        return registry.get_sample_value("storefleet_shelf_sync_total", {"result": result}) or 0

    assert await sync.sync_once()
    first = sync.version
    assert first == NOON // 1000  # increasing across restarts
    assert shown(a) == shown(b) == {"bread": 280, "milk": 199, "coffee": 899, "tv": 49_900}
    assert count("failed") == 1  # the broken driver; the others still got the book
    # nothing changed: no new version, no jobs; only the broken driver is tried again
    clock.advance(60)
    assert not await sync.sync_once()
    assert sync.version == first and count("failed") == 2
    del targets[1]
    assert not await sync.sync_once()
    assert count("unchanged") == 1 and count("pushed") == 1
    # 17:30: the happy hour opens on the shelf
    clock.advance((EVENING - NOON) / 1000 - 60)
    assert await sync.sync_once()
    assert sync.version > first and shown(a)["milk"] == 149
    assert a.book.book is not None and a.book.book.items["milk"].promo_text == "Happy hour"
    # HQ publishes a new price book: the labels follow
    inputs["catalog"] = Catalog.of([*CATALOG.items.values(), Item(sku="tea", price=250)],
                                   version=8, currency="EUR")
    assert await sync.sync_once()
    assert shown(b)["tea"] == 250
    # no catalog yet (a till that never synced): labels left alone
    inputs["catalog"] = None
    before = sync.version
    assert not await sync.sync_once() and sync.version == before


async def test_a_driver_that_joins_later_gets_the_current_book(clock: ManualClock) -> None:
    ctx = FakeContext(clock=clock)
    targets: list[Any] = [esl(ctx, "AP1")]
    sync = ShelfSync(inputs=lambda: (CATALOG, SNAPSHOT), labels=lambda: targets, store=STORE,
                     clock=clock, registry=CollectorRegistry())
    assert await sync.sync_once()
    late = esl(ctx, "AP9")
    targets.append(late)
    assert await sync.sync_once()  # same prices, but AP9 had none
    assert late.book.book is not None and late.book.book.version == sync.version
    assert not await sync.sync_once()
