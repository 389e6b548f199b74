"""The till: prices from the signed, cached snapshot; sale/refund events in the shape the
cloud re-prices; receipts on a real printer (simulator over TCP); crash repair; the
pricing golden corpus replayed through the POS pricing path."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter

from cloud.db.models_loyalty import PromotionPublication
from cloud.loyalty.sale import RefundData, SaleData
from cloud.promotions.reprice import Repricer
from cloud.promotions.service import store_document
from cloud.promotions.signing import SnapshotSigner
from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.printer import PrinterDriver
from edge_agent.drivers.testing import FakeContext
from edge_agent.pos.cache import (
    CacheError,
    CacheMetrics,
    CatalogCache,
    PromotionCache,
    RangeCache,
    load_keys,
)
from edge_agent.pos.ledger import PosLedger
from edge_agent.pos.offline import OfflineLimits
from edge_agent.pos.peripherals import PosPeripherals
from edge_agent.pos.sales import PosMetrics, PosService, SaleRefused, Tenders
from firmware_sim.printer.sim import start_printer_sim
from pricing import (
    Basket,
    Catalog,
    Item,
    Line,
    Member,
    Promotion,
    PromotionSnapshot,
    Store,
)
from protocols.clock import ManualClock
from tests.pricing.golden import replay_golden

STORE = "S001"
CATALOG = Catalog.of([Item(sku="milk", name="Milk 1l", category="dairy", price=199),
                      Item(sku="bread", name="Bread", category="bakery", price=350),
                      Item(sku="coffee", name="Coffee", category="drinks", price=899)],
                     version=3, currency="EUR")
PROMOS: list[dict[str, Any]] = [
    {"kind": "markdown", "id": "milk-10", "percent_bp": 1_000, "scope": {"skus": ["milk"]}},
    {"kind": "threshold", "id": "spend-10", "min_spend": 1_000, "amount_off": 100},
    {"kind": "coupon", "id": "welcome", "code": "CMP-welcome", "amount_off": 50},
    {"kind": "points_earn", "id": "earn", "points": 1, "per_minor": 100},
    {"kind": "points_tender", "id": "pay-points", "block_points": 100, "block_minor": 100},
    {"kind": "stored_value_tender", "id": "pay-sv"},
]
_PROMO: TypeAdapter[Promotion] = TypeAdapter(Promotion)
_versions = itertools.count(1)


def publication(promos: list[dict[str, Any]], version: int | None = None
                ) -> PromotionPublication:
    return PromotionPublication(
        version=version or next(_versions), currency="EUR", published_ms=1_767_225_600_000,
        entries=[{"promotion": _PROMO.dump_python(_PROMO.validate_python(p), mode="json"),
                  "stores": None, "channels": ["pos", "cart", "online"]} for p in promos])


@dataclass
class Till:
    pos: PosService
    ctx: FakeContext
    clock: ManualClock
    signer: SnapshotSigner
    registry: CollectorRegistry
    online: list[bool]
    publication: PromotionPublication

    def events(self, kind: str) -> list[Any]:
        return [e for e in self.ctx.events if e.kind == kind]


@contextlib.asynccontextmanager
async def till(tmp_path: Path, *, promos: list[dict[str, Any]] = PROMOS,
               peripherals: Callable[[], PosPeripherals | None] = lambda: None,
               limits: OfflineLimits | None = None, sink: Any = None,
               ranges: list[dict[str, Any]] | None = None) -> AsyncIterator[Till]:
    clock = ManualClock()
    registry = CollectorRegistry()
    signer = SnapshotSigner.generate()
    keys = load_keys([k["public_key"] for k in signer.public_keys()])
    metrics = CacheMetrics(registry)
    ledger = PosLedger(tmp_path / "pos.db")
    await ledger.open()
    promotions = PromotionCache(tmp_path / "pos" / "promotions.json", store_id=STORE,
                                keys=keys, metrics=metrics)
    pub = publication(promos)
    assert await promotions.install(store_document(pub, STORE, signer))
    catalog = CatalogCache(tmp_path / "pos" / "catalog.json")
    await catalog.install(CATALOG)
    range_cache = RangeCache(tmp_path / "pos" / "ranges.json", store_id=STORE, metrics=metrics)
    range_cache.ranges = ranges or []
    ctx = FakeContext(store_id=STORE, clock=clock, registry=registry)
    online = [True]
    pos = PosService(store_id=STORE, ledger=ledger, promotions=promotions, catalog=catalog,
                     ranges=range_cache, sink=sink or ctx, clock=clock,
                     metrics=PosMetrics(registry), online=lambda: online[0],
                     peripherals=peripherals, limits=limits)
    try:
        yield Till(pos, ctx, clock, signer, registry, online, pub)
    finally:
        await ledger.close()


def lines(*items: tuple[str, int]) -> list[Line]:
    return [Line(line_id=str(n), sku=sku, qty=qty) for n, (sku, qty) in enumerate(items, 1)]


async def test_golden_corpus_through_the_pos_pricing_path(tmp_path: Path) -> None:
    """Every golden case's snapshot goes through the till's path: signed by the cloud's
    signer, verified and compiled by ``PromotionCache``, priced by ``PosService``."""
    async with till(tmp_path) as t:
        def pos_price(basket: Basket, catalog: Catalog, snapshot: PromotionSnapshot,
                      member: Member | None, now: int, store: Store) -> Any:
            pub = publication([p.model_dump(mode="json") for p in snapshot.promotions],
                              version=10_000 + next(_versions))
            # The same verification and compilation as install(), minus the disk write.
            assert isinstance(t.pos.promotions, PromotionCache)
            assert isinstance(t.pos.catalog, CatalogCache)
            assert t.pos.promotions._accept(store_document(pub, STORE, t.signer),
                                            allow_same=False)
            t.pos.catalog.catalog = catalog
            t.pos.store = store
            return t.pos.price_basket(basket, member, now)

        assert replay_golden(pos_price) >= 80


async def test_sale_priced_printed_and_emitted_as_the_cloud_reprices_it(
        tmp_path: Path) -> None:
    sim, server = await start_printer_sim(port=0)
    ctx = FakeContext()
    driver = PrinterDriver(DeviceConfig("P1", "printer", options={
        "host": "127.0.0.1", "tcp_port": server.sockets[0].getsockname()[1],
        "status_interval_s": 0.05}), ctx)
    task = asyncio.create_task(driver.run(), name="printer-under-test")
    member = Member(id="m-1", currency="EUR", points_balance=5_000, stored_value_balance=300)
    try:
        async with till(tmp_path, peripherals=lambda: PosPeripherals(printer=driver)) as t:
            for _ in range(200):
                if driver.health().online:
                    break
                await asyncio.sleep(0.01)
            sale = await t.pos.sell(lines(("milk", 3), ("coffee", 1), ("bread", 1)),
                                    member=member, coupons=["CMP-welcome"],
                                    tenders=Tenders(points=200, stored_value=100,
                                                    method="cash", cash_given=2_000))
            p = sale.priced
            # 3 x 179 (10 % off 199) + 899 + 350 = 1786; -100 spend-10, -50 coupon.
            assert (p.subtotal, p.total) == (3 * 199 + 899 + 350, 1786 - 150)
            assert (p.points_used, p.points_value, p.stored_value) == (200, 200, 100)
            assert p.paid == p.total - 300 and not sale.offline and sale.printed
            assert sale.receipt.change == 2_000 - p.paid
            pages = await sim.wait_pages(1)
            text = pages[0].text()
            assert "Milk 1l" in text and "Coffee" in text
            [event] = t.events("sale")
            assert event.id == sale.sale_id and event.device_id == "pos"
            data = SaleData.model_validate(event.data)
            assert data.snapshot_version == t.publication.version
            compiled = t.pos.promotions.ruleset("pos")
            assert compiled is not None
            assert data.ruleset_hash == compiled[0].ruleset_hash()
            assert data.totals.total == p.total and data.totals.points_used == 200
            assert set(data.catalog["items"]) == {"milk", "coffee", "bread"}  # type: ignore[index]
            assert event.data["priced"]["lines"][0]["discounts"]  # the stored allocation
            # The cloud's pricing path computes the same totals from the event alone.
            again = Repricer().price(
                t.publication, store_id=STORE, channel="pos",
                basket=Basket.model_validate(data.basket),
                catalog=Catalog.model_validate(data.catalog),
                member=Member.model_validate(data.member), now_ms=data.priced_at or 0,
                store=Store.model_validate(data.store))
            assert again.to_dict() == p.to_dict()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        await sim.aclose()


async def test_refunds_reverse_exactly_and_cannot_exceed_the_sale(tmp_path: Path) -> None:
    member = Member(id="m-2", currency="EUR", points_balance=1_000)
    async with till(tmp_path) as t:
        sale = await t.pos.sell(lines(("milk", 3), ("coffee", 1)), member=member,
                                tenders=Tenders(points=100))
        milk = next(ln for ln in sale.priced.lines if ln.sku == "milk")
        first = await t.pos.refund(sale.sale_id, {milk.line_id: 1})
        second = await t.pos.refund(sale.sale_id, {milk.line_id: 2})
        rest = await t.pos.refund(sale.sale_id)  # everything left: the coffee
        assert first.paid + second.paid + rest.paid == sale.priced.paid
        assert (first.points_returned + second.points_returned + rest.points_returned
                == sale.priced.points_used)
        assert (first.points_reversed + second.points_reversed + rest.points_reversed
                == sale.priced.points_earned)
        with pytest.raises(SaleRefused) as err:
            await t.pos.refund(sale.sale_id, {milk.line_id: 1})
        assert err.value.reason == "bad_refund"
        with pytest.raises(SaleRefused):
            await t.pos.refund("no-such-sale")
        refunds = t.events("refund")
        assert len(refunds) == 3
        data = [RefundData.model_validate(e.data) for e in refunds]
        assert {d.sale_id for d in data} == {sale.sale_id}
        assert sum(d.points_reversed for d in data) == sale.priced.points_earned
        assert t.registry.get_sample_value("storefleet_pos_refused_total",
                                           {"reason": "bad_refund"}) == 1


async def test_signed_snapshot_is_checked_on_install_and_on_reload(tmp_path: Path) -> None:
    async with till(tmp_path) as t:
        cache = t.pos.promotions
        assert isinstance(cache, PromotionCache)
        v = cache.version
        assert v is not None
        newer = store_document(publication(PROMOS[:1]), STORE, t.signer)
        tampered = json.loads(json.dumps(newer))
        tampered["payload"]["snapshots"]["pos"]["promotions"][0]["percent_bp"] = 9_000
        with pytest.raises(CacheError, match="signature"):
            await cache.install(tampered)
        other = SnapshotSigner.generate()
        with pytest.raises(CacheError, match="untrusted"):
            await cache.install(store_document(publication(PROMOS), STORE, other))
        with pytest.raises(CacheError, match="store"):
            await cache.install(store_document(publication(PROMOS), "S999", t.signer))
        assert cache.version == v
        assert await cache.install(newer) and cache.version == v + 1
        assert not await cache.install(store_document(t.publication, STORE, t.signer))  # older
        # A restart loads the cached file and verifies it again.
        reloaded = PromotionCache(cache.path, store_id=STORE, keys=cache.keys,
                                  metrics=CacheMetrics(CollectorRegistry()))
        assert await reloaded.load() and reloaded.version == cache.version
        doc = json.loads(cache.path.read_text())
        doc["payload"]["version"] += 1
        cache.path.write_text(json.dumps(doc))
        tampered_disk = PromotionCache(cache.path, store_id=STORE, keys=cache.keys,
                                       metrics=CacheMetrics(CollectorRegistry()))
        assert not await tampered_disk.load() and tampered_disk.ruleset() is None


class FlakySink:
    """An outbox that fails once, as a crash between ledger and outbox would."""

    def __init__(self, inner: FakeContext) -> None:
        self.inner = inner
        self.fail = True

    async def emit_event(self, kind: str, *, device_id: str, data: Any,
                         event_id: str | None = None) -> str:
        if self.fail:
            raise RuntimeError("outbox gone")
        return await self.inner.emit_event(kind, device_id=device_id, data=data,
                                           event_id=event_id)


async def test_sale_left_between_ledger_and_outbox_is_emitted_by_resume(
        tmp_path: Path) -> None:
    ctx = FakeContext()
    sink = FlakySink(ctx)
    async with till(tmp_path, sink=sink) as t:
        with pytest.raises(RuntimeError):
            await t.pos.sell(lines(("bread", 2)))
        assert ctx.events == []
        sink.fail = False
        assert await t.pos.resume() == 1
        assert await t.pos.resume() == 0
        [event] = ctx.events
        assert event.kind == "sale" and event.data["totals"]["total"] == 700


class GatedSink:
    """An outbox that takes its time (a slow disk): each event waits for ``gate``."""

    def __init__(self, inner: FakeContext) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def emit_event(self, kind: str, *, device_id: str, data: Any,
                         event_id: str | None = None) -> str:
        self.waiting.set()
        await self.gate.wait()
        return await self.inner.emit_event(kind, device_id=device_id, data=data,
                                           event_id=event_id)


async def test_a_sale_being_recorded_counts_as_selling_until_it_is_done(
        tmp_path: Path) -> None:
    """What an agent update waits for (decision 0043): a sale in progress is counted from
    the call until it returns, also when it fails."""
    ctx = FakeContext()
    sink = GatedSink(ctx)
    async with till(tmp_path, sink=sink) as t:
        assert t.pos.selling == 0
        sale = asyncio.create_task(t.pos.sell(lines(("bread", 2))))
        await asyncio.wait_for(sink.waiting.wait(), 5)
        assert t.pos.selling == 1
        sink.gate.set()
        await sale
        assert t.pos.selling == 0 and [e.kind for e in ctx.events] == ["sale"]
        with pytest.raises(SaleRefused):
            await t.pos.sell(lines(("no-such-sku", 1)))  # refused: not counted afterwards
        assert t.pos.selling == 0
        # an empty basket is refused as such (it was a validation error from the receipt)
        with pytest.raises(SaleRefused) as empty:
            await t.pos.sell([])
        assert empty.value.reason == "empty" and t.pos.selling == 0
