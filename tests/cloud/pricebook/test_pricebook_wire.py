"""Price books on the wire (decision 0047): a signed header whose sha256 vouches for a
zstd body; the full book, or the delta from the store's base; changes published on top
of the latest version; effective times, the same in the signed document and the
announcement; SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import zstandard
from prometheus_client import CollectorRegistry

from cloud.db.models import Store
from cloud.main import create_app
from cloud.promotions.errors import SignatureInvalid
from cloud.promotions.signing import SnapshotSigner, verify_document
from cloud.publish import MemoryPublisher
from protocols import decode, topics
from protocols.clock import ManualClock
from protocols.messages import PriceBookAnnouncement
from tests.cloud.conftest import ADMIN, DEVICE_S1, api_client, auth, make_settings

SIGNER = SnapshotSigner.generate()
CLOCK = ManualClock()


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(db_url), registry=CollectorRegistry(),
                     publisher=MemoryPublisher(), clock=CLOCK, signer=SIGNER)
    async with api_client(app) as c:
        with app.state.cloud.writer.begin() as s:
            s.add_all([Store(store_id="s1", online=True), Store(store_id="s2", online=True)])
        yield c


def items(n: int, *, price: int = 100) -> list[dict[str, Any]]:
    return [{"sku": f"sku-{i:05d}", "name": f"Item {i}", "category": "grocery",
             "price": price + i} for i in range(n)]


async def publish(c: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await c.post("/api/v1/price-books", headers=auth(ADMIN), json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def wire(c: httpx.AsyncClient, store: str, **params: Any) -> tuple[dict[str, Any], bytes]:
    """The verified header payload and the body it vouches for."""
    r = await c.get(f"/api/v1/stores/{store}/price-book/wire", headers=auth(ADMIN),
                    params=params)
    assert r.status_code == 200, r.text
    payload = verify_document(r.json()["header"], SIGNER.trusted())
    body = await c.get(r.json()["body_path"], headers=auth(ADMIN))
    assert body.status_code == 200, body.text
    assert body.headers["content-type"] == "application/zstd"
    assert hashlib.sha256(body.content).hexdigest() == payload["body_sha256"]
    assert len(body.content) == payload["body_size"]
    return payload, body.content


def inflate(body: bytes) -> dict[str, Any]:
    """The body's lines (each at most wire.CHUNK_ROWS rows) joined into one document."""
    doc: dict[str, Any] = {"upsert": {}, "remove": []}
    for line in zstandard.ZstdDecompressor().decompress(body).split(b"\n"):
        part = json.loads(line)
        for field, values in part.get("upsert", {}).items():
            doc["upsert"].setdefault(field, []).extend(values)
        doc["remove"] += part.get("remove", [])
    return doc


async def test_full_book_then_delta_from_the_store_base(client: httpx.AsyncClient) -> None:
    v1 = (await publish(client, items=items(3000)))["version"]
    payload, body = await wire(client, "s1")
    assert payload["kind"] == "storefleet.pricebook.wire"
    assert (payload["version"], payload["base_version"], payload["items"]) == (v1, None, 3000)
    doc = inflate(body)
    assert doc["upsert"]["sku"][:2] == ["sku-00000", "sku-00001"]
    assert doc["upsert"]["price"][2999] == 3099 and doc["remove"] == []
    assert len(body) < len(json.dumps(items(3000))) / 4  # compressed, columns

    # Changes on top of the latest: two prices and one sku dropped; the store's override
    v2 = (await publish(client, changes=True, items=[
        {"sku": "sku-00001", "price": 5}, {"sku": "new", "price": 7}],
        remove=["sku-00002"]))["version"]
    v3 = (await publish(client, store_id="s1", items=[{"sku": "sku-00003", "price": 1}],
                        effective_ms=CLOCK.now_ms() + 60_000))["version"]
    payload, body = await wire(client, "s1", base=v1)
    assert (payload["version"], payload["base_version"]) == (v3, v1)
    assert (payload["items"], payload["upserts"], payload["removals"]) == (3000, 3, 1)
    assert payload["effective_ms"] == CLOCK.now_ms() + 60_000
    doc = inflate(body)
    assert doc["upsert"]["sku"] == ["new", "sku-00001", "sku-00003"]
    assert doc["upsert"]["price"] == [7, 5, 1] and doc["remove"] == ["sku-00002"]

    # s2 has no book of its own: the chain's changes only; at its latest: nothing to do
    payload, _ = await wire(client, "s2", base=v1)
    assert (payload["version"], payload["base_version"], payload["upserts"],
            payload["removals"]) == (v2, v1, 2, 1)
    payload, _ = await wire(client, "s2", base=v2)
    assert (payload["base_version"], payload["upserts"], payload["removals"]) == (v2, 0, 0)
    # a base this store never had (v3 is s1's) cannot be patched: the full book
    payload, _ = await wire(client, "s2", base=v3)
    assert (payload["version"], payload["base_version"], payload["upserts"]) == (v2, None, 3000)


async def test_header_signs_the_body(client: httpx.AsyncClient) -> None:
    await publish(client, items=items(10))
    r = await client.get("/api/v1/stores/s1/price-book/wire", headers=auth(DEVICE_S1))
    header = r.json()["header"]
    header["payload"]["body_sha256"] = "0" * 64  # another body
    with pytest.raises(SignatureInvalid):
        verify_document(header, SIGNER.trusted())


async def test_nothing_published_and_empty_books(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/stores/s1/price-book/wire", headers=auth(DEVICE_S1))
    assert r.status_code == 404
    r = await client.get("/api/v1/stores/s2/price-book/wire", headers=auth(DEVICE_S1))
    assert r.status_code == 403  # a store's device reads its own book only
    r = await client.post("/api/v1/price-books", headers=auth(ADMIN), json={"items": []})
    assert r.status_code == 422
    await publish(client, items=items(1))
    r = await client.post("/api/v1/price-books", headers=auth(ADMIN),
                          json={"changes": True, "items": [], "remove": ["sku-00000"]})
    assert r.status_code == 422


async def test_document_and_announcement_say_the_wire_effective_time(db_url: str) -> None:
    """The signed document (the document route and the announcement's inline book) says
    when the store starts charging it, the same time as the wire header (decision
    0047): the box holds either until then."""
    publisher = MemoryPublisher()
    app = create_app(make_settings(db_url), registry=CollectorRegistry(),
                     publisher=publisher, clock=CLOCK, signer=SIGNER)
    async with api_client(app) as c:
        with app.state.cloud.writer.begin() as s:
            s.add(Store(store_id="s1", online=True))
        v1 = (await publish(c, items=items(10)))["version"]
        due = CLOCK.now_ms() + 3_600_000
        v2 = (await publish(c, changes=True, items=[{"sku": "sku-00001", "price": 1}],
                            effective_ms=due))["version"]
        r = await c.get("/api/v1/stores/s1/price-book", headers=auth(DEVICE_S1))
        document = verify_document(r.json(), SIGNER.trusted())
        header, _ = await wire(c, "s1", base=v1)
        assert document["version"] == header["version"] == v2
        assert document["effective_ms"] == header["effective_ms"] == due
        sent = decode(publisher.retained[topics.content_pricebook("s1")].payload,
                      PriceBookAnnouncement)
        assert sent.document is not None
        assert verify_document(sent.document, SIGNER.trusted())["effective_ms"] == due
        # as of v1 (no effective time given): effective when published
        r = await c.get("/api/v1/stores/s1/price-book", headers=auth(DEVICE_S1),
                        params={"version": v1})
        old = verify_document(r.json(), SIGNER.trusted())
        assert old["effective_ms"] == old["published_ms"]
