"""The box applies price books from the wire (decision 0047) into its SQLite store,
against the real cloud app over HTTP (ASGI): the full book signed, compressed,
downloaded, verified and applied; a delta on its base; a delta on another base makes
it fetch the full book; a tampered header or body refused, counted, the old book keeps
pricing; a book held until its effective time; the till prices while a book applies;
the shelf labels follow, after a delta only for its skus; a held book survives a
restart and applies at its time with the cloud unreachable; a signed document is held
until its effective time like a wire book."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.db.models import Store as StoreRow
from cloud.main import create_app
from cloud.pricebook import wire
from cloud.promotions.signing import SnapshotSigner, raw_public
from cloud.publish import MemoryPublisher
from edge_agent.pos.cache import CacheError, CacheMetrics, CatalogCache, CloudApi, load_keys
from edge_agent.pos.pricebook import PriceBookCache, WireBook, apply_full_in_child
from edge_agent.pos.pricestore import PriceStore
from edge_agent.pos.shelf import ShelfSync
from pricing import Basket, Line, PromotionSnapshot, Store, compile, price
from protocols.clock import ManualClock
from protocols.esl import PriceBook
from tests.cloud.conftest import ADMIN, DEVICE_S1, api_client, auth, make_settings

SIGNER = SnapshotSigner.generate()
KEYS = load_keys([base64.b64encode(raw_public(SIGNER.public_key)).decode()])
RULES = compile(PromotionSnapshot(version=1, currency="EUR"))
N = 3000


def items(n: int) -> list[dict[str, Any]]:
    return [{"sku": f"sku-{i:05d}", "name": f"Item {i}", "price": 100 + i} for i in range(n)]


class Tamper(httpx.AsyncBaseTransport):
    """The real cloud app behind a transport that can rewrite a request or a response
    on its way (a hostile network or a broken cache in front of the cloud)."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.request_hook: Callable[[httpx.Request], httpx.Request] | None = None
        self.body_hook: Callable[[bytes], bytes] | None = None
        self.header_hook: Callable[[dict[str, Any]], None] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.request_hook is not None:
            request = self.request_hook(request)
        response = await self.inner.handle_async_request(request)
        path = request.url.path
        if self.body_hook is not None and path.endswith("/wire/body"):
            body = self.body_hook(await response.aread())
            return httpx.Response(response.status_code, content=body)
        if self.header_hook is not None and path.endswith("/wire"):
            doc = httpx.Response(200, content=await response.aread()).json()
            self.header_hook(doc["header"])
            return httpx.Response(response.status_code, json=doc)
        return response


@dataclass
class Box:
    cloud: httpx.AsyncClient
    net: Tamper
    api: CloudApi
    cache: PriceBookCache
    clock: ManualClock
    registry: CollectorRegistry

    def count(self, result: str) -> float:
        return self.registry.get_sample_value("storefleet_pos_cache_refresh_total",
                                              {"what": "pricebook", "result": result}) or 0.0

    async def publish(self, **body: Any) -> int:
        r = await self.cloud.post("/api/v1/price-books", headers=auth(ADMIN), json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["version"])

    def sale(self, sku: str) -> int:
        """What the till charges for one ``sku`` now."""
        catalog = self.cache.catalog.catalog
        assert catalog is not None
        basket = Basket(id="b", currency="EUR", lines=(Line(line_id="1", sku=sku, qty=1),))
        return price(basket, catalog, RULES, None, self.clock.now_ms(),
                     Store(id="s1", currency="EUR")).total


def new_cache(data: Path, registry: CollectorRegistry, clock: ManualClock) -> PriceBookCache:
    return PriceBookCache(data / "pricebook.json", store_id="s1", keys=KEYS,
                          catalog=CatalogCache(data / "catalog.json"),
                          metrics=CacheMetrics(registry), clock=clock,
                          store=PriceStore(data / "pricebook.db"))


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Box]:
    clock = ManualClock()
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'cloud.db'}"),
                     registry=CollectorRegistry(), publisher=MemoryPublisher(), clock=clock,
                     signer=SIGNER)
    async with api_client(app) as cloud:
        with app.state.cloud.writer.begin() as s:
            s.add(StoreRow(store_id="s1", online=True))
        net = Tamper(app)
        api = CloudApi("http://cloud", token=DEVICE_S1, transport=net)
        registry = CollectorRegistry()
        try:
            yield Box(cloud, net, api, new_cache(tmp_path / "box", registry, clock), clock,
                      registry)
        finally:
            await api.aclose()


async def test_full_book_then_deltas_applied_and_survive_restart(box: Box,
                                                                 tmp_path: Path) -> None:
    v1 = await box.publish(items=items(N))
    assert await box.cache.refresh(box.api)
    assert box.cache.version == v1 and box.cache.changed is None  # full: every label
    assert box.sale("sku-00007") == 107
    state = box.cache.store.state() if box.cache.store else None
    assert state is not None and (state.version, state.items) == (v1, N)
    assert not (tmp_path / "box" / "catalog.json").exists()  # the store is the book

    v2 = await box.publish(changes=True, items=[{"sku": "sku-00007", "price": 5},
                                                {"sku": "new", "price": 9}],
                           remove=["sku-00008"])
    assert await box.cache.refresh(box.api)
    assert box.cache.version == v2
    assert sorted(box.cache.changed or []) == ["new", "sku-00007", "sku-00008"]
    assert (box.sale("sku-00007"), box.sale("new")) == (5, 9)
    assert "sku-00008" not in (box.cache.catalog.catalog.items if box.cache.catalog.catalog
                               else {})
    assert not await box.cache.refresh(box.api)  # up to date
    assert box.count("updated") == 2 and box.count("unchanged") == 1

    again = new_cache(tmp_path / "box", CollectorRegistry(), box.clock)
    assert await again.load()
    assert again.version == v2 and again.catalog.catalog is not None
    assert len(again.catalog.catalog.items) == N  # -1 removed, +1 new


async def test_delta_on_another_base_fetches_the_full_book(box: Box) -> None:
    v1 = await box.publish(items=items(N))
    assert await box.cache.refresh(box.api)
    await box.publish(changes=True, items=[{"sku": "sku-00001", "price": 1}])
    v3 = await box.publish(changes=True, items=[{"sku": "sku-00002", "price": 2}])
    assert await box.cache.refresh(box.api)  # the delta v1 -> v3
    assert box.cache.version == v3 and box.cache.changed == ["sku-00001", "sku-00002"]

    # The box is at v3; a cloud (or a cache in front of it) answers with the delta on v1
    def old_base(request: httpx.Request) -> httpx.Request:
        if request.url.path.endswith("/wire") and "base" in request.url.params:
            return httpx.Request(request.method, request.url.copy_set_param("base", v1),
                                 headers=request.headers)
        return request

    box.net.request_hook = old_base
    v4 = await box.publish(changes=True, items=[{"sku": "sku-00003", "price": 3}])
    assert await box.cache.refresh(box.api)
    assert box.count("base_mismatch") == 1
    assert box.cache.version == v4 and box.cache.changed is None  # the full book
    assert [box.sale(f"sku-0000{i}") for i in (1, 2, 3, 4)] == [1, 2, 3, 104]


async def test_tampered_header_or_body_refused_old_book_keeps_pricing(box: Box) -> None:
    v1 = await box.publish(items=items(N))
    assert await box.cache.refresh(box.api)
    await box.publish(changes=True, items=[{"sku": "sku-00001", "price": 1}])

    def cheaper(header: dict[str, Any]) -> None:
        header["payload"]["effective_ms"] = 0
    box.net.header_hook = cheaper
    assert not await box.cache.refresh(box.api)
    assert box.count("signature") == 1

    box.net.header_hook = None
    box.net.body_hook = lambda body: body[:-1] + bytes([body[-1] ^ 1])
    assert not await box.cache.refresh(box.api)
    assert box.count("body_hash") == 1
    assert box.cache.version == v1 and box.sale("sku-00001") == 101
    state = box.cache.store.state() if box.cache.store else None
    assert state is not None and state.version == v1

    box.net.body_hook = None
    assert await box.cache.refresh(box.api)
    assert box.sale("sku-00001") == 1


async def test_book_held_until_its_effective_time(box: Box) -> None:
    v1 = await box.publish(items=items(10))
    assert await box.cache.refresh(box.api)
    v2 = await box.publish(changes=True, items=[{"sku": "sku-00001", "price": 1}],
                           effective_ms=box.clock.now_ms() + 3_600_000)
    assert not await box.cache.refresh(box.api)
    assert box.count("pending") == 1
    assert box.cache.pending is not None and box.cache.version == v1
    assert not await box.cache.apply_due()
    assert box.sale("sku-00001") == 101
    box.clock.advance(3600)
    assert await box.cache.apply_due()
    assert box.cache.version == v2 and box.sale("sku-00001") == 1


async def test_till_prices_while_a_full_book_applies(box: Box) -> None:
    """The apply runs off the loop, in chunks: sales are priced meanwhile (how long a
    sale waits is measured by ``storefleet bench pricebook``, not asserted here)."""
    await box.publish(items=items(N))
    assert await box.cache.refresh(box.api)
    await box.publish(items=[{**i, "price": i["price"] + 1} for i in items(20_000)])
    priced: list[int] = []
    done = asyncio.Event()

    async def till() -> None:
        while not done.is_set():
            priced.append(box.sale("sku-00007"))
            await asyncio.sleep(0)

    task = asyncio.create_task(till(), name="till")
    try:
        assert await box.cache.refresh(box.api)
    finally:
        done.set()
        await task
    assert len(priced) > 10 and set(priced) <= {107, 108}
    assert box.sale("sku-00007") == 108


class Labels:
    """An e-shelf-label driver's capability (``LabelSink``): keeps the last book."""

    device_id = "esl-1"
    family = "esl"

    def __init__(self) -> None:
        self.book: PriceBook | None = None

    def apply_price_book(self, book: PriceBook) -> dict[str, Any]:
        self.book = book
        return {"labels": len(book.items)}


async def test_labels_follow_a_delta_for_its_skus_only(box: Box) -> None:
    await box.publish(items=items(N))
    assert await box.cache.refresh(box.api)
    labels = Labels()
    registry = CollectorRegistry()
    sync = ShelfSync(inputs=lambda: (box.cache.catalog.catalog, None), labels=lambda: [labels],
                     store=Store(id="s1", currency="EUR"), clock=box.clock,
                     registry=registry, changes=box.cache.changed_since)

    def computed() -> float:
        return registry.get_sample_value("storefleet_shelf_skus_computed_total") or 0.0

    assert await sync.sync_once()
    assert computed() == N and labels.book is not None
    assert labels.book.items["sku-00007"].price_minor == 107

    await box.publish(changes=True, items=[{"sku": "sku-00007", "price": 5},
                                           {"sku": "new", "price": 9}], remove=["sku-00008"])
    await box.publish(changes=True, items=[{"sku": "sku-00009", "price": 6}])
    assert await box.cache.refresh(box.api)  # one delta of both versions
    assert await sync.sync_once()
    assert computed() == N + 3  # sku-00008 is gone: nothing to compute for it
    book = labels.book
    assert book is not None and len(book.items) == N
    assert (book.items["sku-00007"].price_minor, book.items["new"].price_minor,
            book.items["sku-00009"].price_minor) == (5, 9, 6)
    assert "sku-00008" not in book.items and book.items["sku-00010"].price_minor == 110

    # a full book in between: every label again
    await box.publish(items=items(10))
    box.net.request_hook = lambda r: httpx.Request(
        r.method, r.url.copy_remove_param("base"), headers=r.headers)
    assert await box.cache.refresh(box.api)
    assert await sync.sync_once()
    assert computed() == N + 3 + 10 and labels.book is not None
    assert len(labels.book.items) == 10


async def test_full_book_applied_in_a_child_process_refused_whole(tmp_path: Path) -> None:
    """A full book is applied by a child process; a body that does not hold what its
    (signed) header says is refused there and the store keeps its book."""
    store = PriceStore(tmp_path / "book.db")
    items = {f"sku-{i}": {"sku": f"sku-{i}", "price": i} for i in range(2000)}
    good = wire.build(SIGNER, store_id="s1", version=1, currency="EUR", effective_ms=0,
                      published_ms=0, items=items)
    await apply_full_in_child(store, WireBook(payload=good.payload, body=good.body))
    state = store.state()
    assert state is not None and (state.version, state.items) == (1, 2000)

    lying = wire.build(SIGNER, store_id="s1", version=2, currency="EUR", effective_ms=0,
                       published_ms=0, items=items)
    payload = {**lying.payload, "upserts": 2001}  # what the header says, not the body
    with pytest.raises(CacheError) as err:
        await apply_full_in_child(store, WireBook(payload=payload, body=lying.body))
    assert err.value.reason == "invalid" and "counts" in err.value.detail
    state = store.state()
    assert state is not None and (state.version, state.items) == (1, 2000)
    assert not [n for n in os.listdir(tmp_path) if "incoming" in n]  # staged files gone


# ---- held books across restarts; both paths honour effective_ms (decision 0047) -------

HOUR_MS = 3_600_000


def unreachable_api() -> CloudApi:
    """A real client to a local port nothing listens on: every call is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return CloudApi(f"http://127.0.0.1:{port}", token=DEVICE_S1, timeout_s=2)


@pytest.mark.parametrize("changes", [True, False], ids=["delta", "full"])
async def test_held_book_survives_a_restart_and_applies_with_the_cloud_down(
        box: Box, tmp_path: Path, changes: bool) -> None:
    """The box holds a future book, restarts before its time (the old cache object is
    simply abandoned, as a kill -9 would) with the cloud unreachable, and still applies
    it once its time comes."""
    data = tmp_path / "box"
    v1 = await box.publish(items=items(N))
    assert await box.cache.refresh(box.api)
    due = box.clock.now_ms() + HOUR_MS
    if changes:
        v2 = await box.publish(changes=True, items=[{"sku": "sku-00001", "price": 1}],
                               effective_ms=due)
    else:
        v2 = await box.publish(items=[{**i, "price": 1} for i in items(N)], effective_ms=due)
    assert not await box.cache.refresh(box.api)
    assert box.cache.pending is not None and box.cache.pending.version == v2
    assert (data / "pricebook.held").exists()
    assert not any(n.startswith(".") for n in os.listdir(data))  # no temp file left

    registry = CollectorRegistry()
    again = new_cache(data, registry, box.clock)
    down = unreachable_api()
    try:
        assert await again.load()
        assert again.version == v1 and again.pending is not None
        assert (again.pending.version, again.pending.effective_ms) == (v2, due)
        assert not await again.refresh(down)  # the cloud is unreachable
        assert registry.get_sample_value("storefleet_pos_cache_refresh_total",
                                         {"what": "pricebook", "result": "network"}) == 1
        box.clock.advance(3599)
        assert not await again.apply_due() and again.version == v1
        box.clock.advance(1)
        assert await again.apply_due()
    finally:
        await down.aclose()
    assert again.version == v2 and again.pending is None
    assert not (data / "pricebook.held").exists()
    state = again.store.state() if again.store else None
    assert state is not None and state.version == v2
    catalog = again.catalog.catalog
    assert catalog is not None and catalog.items["sku-00001"].price == 1
    assert (catalog.items["sku-00002"].price == 102) is changes

    third = new_cache(data, CollectorRegistry(), box.clock)  # nothing held any more
    assert await third.load()
    assert third.version == v2 and third.pending is None


async def test_held_book_due_while_the_box_was_down_applies_at_load(box: Box,
                                                                   tmp_path: Path) -> None:
    v1 = await box.publish(items=items(10))
    assert await box.cache.refresh(box.api)
    v2 = await box.publish(changes=True, items=[{"sku": "sku-00003", "price": 3}],
                           effective_ms=box.clock.now_ms() + HOUR_MS)
    assert not await box.cache.refresh(box.api) and box.cache.version == v1
    box.clock.advance(2 * 3600)  # the box was off when the book became due
    again = new_cache(tmp_path / "box", CollectorRegistry(), box.clock)
    assert await again.load()
    assert again.version == v2 and again.pending is None
    assert again.catalog.catalog is not None
    assert again.catalog.catalog.items["sku-00003"].price == 3


async def test_held_book_dropped_when_a_newer_book_is_applied(box: Box,
                                                              tmp_path: Path) -> None:
    data = tmp_path / "box"
    await box.publish(items=items(10))
    assert await box.cache.refresh(box.api)
    await box.publish(changes=True, items=[{"sku": "sku-00001", "price": 1}],
                      effective_ms=box.clock.now_ms() + HOUR_MS)
    assert not await box.cache.refresh(box.api)
    held = (data / "pricebook.held").read_bytes()
    v3 = await box.publish(changes=True, items=[{"sku": "sku-00002", "price": 2}])
    assert await box.cache.refresh(box.api)  # v3 now, on top of v1 (it holds v2's change)
    assert box.cache.version == v3 and box.cache.pending is None
    assert box.count("superseded") == 1
    assert not (data / "pricebook.held").exists()
    assert (box.sale("sku-00001"), box.sale("sku-00002")) == (1, 2)

    # A crash between the apply and the file's removal: the file is dropped at load.
    (data / "pricebook.held").write_bytes(held)
    registry = CollectorRegistry()
    again = new_cache(data, registry, box.clock)
    assert await again.load()
    assert again.version == v3 and again.pending is None
    assert registry.get_sample_value("storefleet_pos_cache_refresh_total",
                                     {"what": "pricebook", "result": "superseded"}) == 1
    assert not (data / "pricebook.held").exists()
    box.clock.advance(2 * 3600)
    assert not await again.apply_due() and again.version == v3


async def test_tampered_held_file_is_refused_at_load(box: Box, tmp_path: Path) -> None:
    data = tmp_path / "box"
    v1 = await box.publish(items=items(10))
    assert await box.cache.refresh(box.api)
    await box.publish(changes=True, items=[{"sku": "sku-00001", "price": 1}],
                      effective_ms=box.clock.now_ms() + HOUR_MS)
    assert not await box.cache.refresh(box.api)
    held = (data / "pricebook.held").read_bytes()
    (data / "pricebook.held").write_bytes(held[:-1] + bytes([held[-1] ^ 1]))  # the body
    registry = CollectorRegistry()
    again = new_cache(data, registry, box.clock)
    assert await again.load()
    assert again.version == v1 and again.pending is None
    assert registry.get_sample_value("storefleet_pos_cache_refresh_total",
                                     {"what": "pricebook", "result": "bad_cache"}) == 1
    box.clock.advance(2 * 3600)
    assert not await again.apply_due() and again.version == v1


async def test_document_with_a_future_effective_time_is_held_like_the_wire(
        box: Box, tmp_path: Path) -> None:
    """The signed document (the announcement's inline book, the document route) says
    when it takes effect; the box holds it until then, across a restart, as a wire
    book."""
    data = tmp_path / "box"
    v1 = await box.publish(items=items(10))
    assert await box.cache.refresh(box.api)
    due = box.clock.now_ms() + HOUR_MS
    v2 = await box.publish(changes=True, items=[{"sku": "sku-00001", "price": 1}],
                           effective_ms=due)
    r = await box.cloud.get("/api/v1/stores/s1/price-book", headers=auth(DEVICE_S1))
    assert r.status_code == 200, r.text
    document = r.json()
    assert document["payload"]["effective_ms"] == due
    assert not await box.cache.install(document)  # inline, as an announcement brings it
    assert box.cache.version == v1 and box.sale("sku-00001") == 101
    assert box.cache.pending is not None and box.cache.pending.version == v2
    assert not await box.cache.refresh(box.api)  # the wire offers it too: held already
    assert box.count("pending") == 1

    again = new_cache(data, CollectorRegistry(), box.clock)
    assert await again.load()
    assert again.version == v1 and again.pending is not None
    assert not await again.apply_due()
    box.clock.advance(3600)
    assert await again.apply_due()
    assert again.version == v2 and again.pending is None
    assert not (data / "pricebook.held").exists()
    state = again.store.state() if again.store else None
    assert state is not None and (state.version, state.effective_ms) == (v2, due)
    catalog = again.catalog.catalog
    assert catalog is not None and catalog.items["sku-00001"].price == 1


async def test_delta_apply_never_waits_on_the_loop(box: Box) -> None:
    """The store's SQLite work runs in worker threads: with another writer holding the
    database's write lock for a second, the loop keeps turning while the delta waits
    for it (any SQLite call on the loop would stall it that long)."""
    await box.publish(items=items(N))
    assert await box.cache.refresh(box.api)
    v2 = await box.publish(changes=True, items=[{"sku": "sku-00001", "price": 1}])
    assert box.cache.store is not None
    blocker = sqlite3.connect(box.cache.store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # writers wait; WAL readers (the till) do not
    refresh = asyncio.create_task(box.cache.refresh(box.api), name="refresh")
    gaps: list[float] = []
    loop = asyncio.get_running_loop()
    try:
        last = loop.time()
        while loop.time() - last < 5 and len(gaps) < 100:  # ~1 s of 10 ms ticks
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - last)
            last = loop.time()
            assert box.sale("sku-00001") == 101  # the till prices with the old book
        assert not refresh.done()  # still waiting for the lock, in its thread
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert await refresh
    assert box.cache.version == v2 and box.sale("sku-00001") == 1
    assert max(gaps) < 0.5, f"the loop stalled {max(gaps):.2f} s"
