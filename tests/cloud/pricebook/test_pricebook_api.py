"""Price books in the cloud (decision 0015): HQ publishes chain and store versions; a
store's signed book is the chain's overlaid with its own, versions only grow, the book
is pushed retained on ``content/pricebook``; SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.db.models import Store
from cloud.main import create_app
from cloud.promotions.errors import SignatureInvalid
from cloud.promotions.signing import SnapshotSigner, verify_document
from cloud.publish import MemoryPublisher
from pricing import Catalog
from protocols import decode, topics
from protocols.clock import ManualClock
from protocols.messages import PriceBookAnnouncement
from tests.cloud.conftest import ADMIN, DEVICE_S1, MANAGER, api_client, auth, make_settings

SIGNER = SnapshotSigner.generate()
ITEMS = [{"sku": "milk", "name": "Milk", "category": "dairy", "price": 199},
         {"sku": "bread", "category": "bakery", "price": 350, "earns_points": False}]


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
async def client(db_url: str, publisher: MemoryPublisher) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(db_url), registry=CollectorRegistry(), publisher=publisher,
                     clock=ManualClock(), signer=SIGNER)
    async with api_client(app) as c:
        with app.state.cloud.writer.begin() as s:
            s.add_all([Store(store_id="s1", online=True), Store(store_id="s2", online=True)])
        yield c


async def book(c: httpx.AsyncClient, store: str, token: str = ADMIN, **params: Any) -> Any:
    r = await c.get(f"/api/v1/stores/{store}/price-book", headers=auth(token), params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def test_publish_chain_then_store_override(client: httpx.AsyncClient,
                                                 publisher: MemoryPublisher) -> None:
    c, h = client, auth(ADMIN)
    r = await c.get("/api/v1/stores/s1/price-book", headers=h)
    # Nothing published yet: a normal state with its own problem type (issue 11).
    assert r.status_code == 404 and r.json()["type"].endswith("/nothing_published")
    r = await c.post("/api/v1/price-books", headers=h, json={"items": ITEMS})
    assert r.status_code == 201, r.text
    assert r.json() | {"published_ms": 0} == {"version": 1, "scope": "*", "items": 2,
                                              "published_ms": 0, "announced": 2,
                                              "announce_failed": []}
    # s1's overrides: milk cheaper there, and an item only s1 sells.
    r = await c.post("/api/v1/price-books", headers=h, json={
        "store_id": "s1", "items": [{"sku": "milk", "price": 179, "category": "dairy"},
                                    {"sku": "local-honey", "price": 650}]})
    assert r.status_code == 201 and r.json()["version"] == 2 and r.json()["announced"] == 1

    doc = await book(c, "s1", DEVICE_S1)
    payload = verify_document(doc, SIGNER.trusted())
    assert (payload["kind"], payload["store_id"], payload["version"], payload["chain_version"],
            payload["store_version"]) == ("storefleet.pricebook", "s1", 2, 1, 2)
    catalog = Catalog.model_validate(payload["catalog"])
    assert catalog.version == 2 and catalog.currency == "EUR"
    assert {s: i.price for s, i in catalog.items.items()} == {
        "bread": 350, "local-honey": 650, "milk": 179}
    other = verify_document(await book(c, "s2"), SIGNER.trusted())
    assert other["version"] == 1 and other["catalog"]["items"]["milk"]["price"] == 199
    # As of version 1, s1 had the chain's book only.
    assert verify_document(await book(c, "s1", version=1),
                           SIGNER.trusted())["catalog"]["items"]["milk"]["price"] == 199

    # Pushed retained to each store reached, with the signed book inline.
    sent = publisher.retained[topics.content_pricebook("s1")]
    assert sent.qos == 1 and sent.retain
    msg = decode(sent.payload, PriceBookAnnouncement)
    assert msg.version == 2 and msg.path == "/api/v1/stores/s1/price-book"
    assert msg.document is not None and verify_document(msg.document, SIGNER.trusted())
    assert len(publisher.on(topics.content_pricebook("s2"))) == 1  # s1's change: not s2

    # A new chain version reaches every store with a higher version; s1 keeps its milk.
    r = await c.post("/api/v1/price-books", headers=h,
                     json={"items": [*ITEMS[:1], {**ITEMS[1], "price": 399}]})
    assert r.json()["version"] == 3
    s1 = verify_document(await book(c, "s1"), SIGNER.trusted())
    assert s1["version"] == 3 and s1["catalog"]["items"]["milk"]["price"] == 179
    assert s1["catalog"]["items"]["bread"]["price"] == 399


async def test_tampered_document_does_not_verify(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/price-books", headers=auth(ADMIN), json={"items": ITEMS})
    doc = await book(client, "s1")
    doc["payload"]["catalog"]["items"]["milk"]["price"] = 1
    with pytest.raises(SignatureInvalid):
        verify_document(doc, SIGNER.trusted())


@pytest.mark.parametrize(("body", "status"), [
    ({"items": [ITEMS[0], ITEMS[0]]}, 422),                   # a sku twice
    ({"items": [{"sku": "x", "price": -1}]}, 422),            # negative price
    ({"items": []}, 422),
    ({"items": ITEMS, "currency": "eur"}, 422),
])
async def test_bad_books_are_refused(client: httpx.AsyncClient, body: dict[str, Any],
                                     status: int) -> None:
    r = await client.post("/api/v1/price-books", headers=auth(ADMIN), json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_only_hq_publishes_and_scoped_tokens_read_their_own(
    client: httpx.AsyncClient,
) -> None:
    c = client
    r = await c.post("/api/v1/price-books", headers=auth(MANAGER), json={"items": ITEMS})
    assert r.status_code == 403
    await c.post("/api/v1/price-books", headers=auth(ADMIN), json={"items": ITEMS})
    r = await c.get("/api/v1/stores/s2/price-book", headers=auth(DEVICE_S1))
    assert r.status_code == 403 and r.json()["type"].endswith("/forbidden_store")
    r = await c.post("/api/v1/price-books", headers=auth(ADMIN),
                     json={"items": ITEMS, "currency": "USD", "store_id": "s2"})
    # Chain in EUR, s2's own book in USD: refused at publish, nothing stored.
    assert r.status_code == 409, r.text
    assert verify_document(await book(c, "s2"), SIGNER.trusted())["version"] == 1
