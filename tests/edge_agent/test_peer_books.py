"""The primary's price-book cache (``edge_agent.peer.books``, decision 0049) against a
cloud that can lie: the cloud's side is an ``httpx.MockTransport`` serving a header
signed with a real key and a body this test can swap, counting what it is asked.

A header is asked of the cloud once per ``ttl_s``; only a header that verifies for this
store is kept; a body is fetched only when a verified header vouches for it, once
however many ask, and refused (not kept) when its bytes are not the ones signed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.promotions.signing import SnapshotSigner
from edge_agent.peer.books import BookCache, BookRefused, BookUnavailable
from edge_agent.pos.cache import load_keys
from edge_agent.pos.pricebook import WIRE_FORMAT, WIRE_KIND
from protocols.clock import ManualClock

STORE = "s1"
BODY = b"zstd body of a price book" * 100
WIRE = f"/api/v1/stores/{STORE}/price-book/wire"


class LyingCloud:
    def __init__(self, signer: SnapshotSigner, *, store: str = STORE) -> None:
        self.signer = signer
        self.store = store
        self.body = BODY
        self.asked: Counter[str] = Counter()

    def header(self) -> dict[str, Any]:
        return self.signer.sign({
            "kind": WIRE_KIND, "format": WIRE_FORMAT, "store_id": self.store, "version": 2,
            "base_version": None, "effective_ms": 0, "published_ms": 0, "currency": "EUR",
            "body_sha256": hashlib.sha256(BODY).hexdigest(), "body_size": len(BODY),
            "items": 1, "upserts": 1, "removals": 0})

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.asked[request.url.path] += 1
        await asyncio.sleep(0.01)  # long enough for concurrent askers to meet
        if request.url.path == WIRE:
            return httpx.Response(200, json={"header": self.header(),
                                             "body_path": f"{WIRE}/body?version=2"})
        return httpx.Response(200, content=self.body)


def books_for(tmp_path: Path, cloud: LyingCloud, trusted: SnapshotSigner,
              clock: ManualClock) -> BookCache:
    keys = load_keys([trusted.public_keys()[0]["public_key"]])
    client = httpx.AsyncClient(base_url="http://cloud", transport=httpx.MockTransport(cloud))
    return BookCache(tmp_path / "books", store_id=STORE, client=client, keys=lambda: keys,
                     clock=clock, ttl_s=5.0)


async def test_headers_kept_ttl_bodies_once_and_verified(tmp_path: Path) -> None:
    signer, clock = SnapshotSigner.generate(), ManualClock()
    cloud = LyingCloud(signer)
    books = books_for(tmp_path, cloud, signer, clock)
    with pytest.raises(BookUnavailable) as early:
        await books.body(2, None)
    assert early.value.reason == "not_vouched" and cloud.asked[f"{WIRE}/body"] == 0

    replies = await asyncio.gather(*(books.header(None) for _ in range(3)))
    assert [r.source for r in replies].count("upstream") == 1
    assert (await books.header(None)).source == "cache" and cloud.asked[WIRE] == 1
    clock.advance(5.0)
    assert (await books.header(None)).source == "upstream" and cloud.asked[WIRE] == 2

    cloud.body = BODY[:-1] + b"!"  # changed on the way: same size, other bytes
    with pytest.raises(BookRefused) as bad:
        await books.body(2, None)
    assert bad.value.reason == "body_hash" and not list((tmp_path / "books").iterdir())
    cloud.body = BODY
    got = await asyncio.gather(*(books.body(2, None) for _ in range(3)))
    assert sorted(source for _, source in got) == ["coalesced", "coalesced", "upstream"]
    assert (await books.body(2, None))[1] == "cache"
    assert got[0][0].read_bytes() == BODY and cloud.asked[f"{WIRE}/body"] == 2
    await books.client.aclose()


@pytest.mark.parametrize("case", ["untrusted_key", "other_store"])
async def test_a_header_that_does_not_verify_is_neither_kept_nor_vouching(
        tmp_path: Path, case: str) -> None:
    signer, clock = SnapshotSigner.generate(), ManualClock()
    cloud = LyingCloud(signer, store="s2" if case == "other_store" else STORE)
    trusted = SnapshotSigner.generate() if case == "untrusted_key" else signer
    books = books_for(tmp_path, cloud, trusted, clock)
    for _ in range(2):
        with pytest.raises(BookRefused) as refused:
            await books.header(None)
        assert refused.value.reason == ("signature" if case == "untrusted_key" else "store")
    assert cloud.asked[WIRE] == 2  # not kept: asked again
    with pytest.raises(BookUnavailable):
        await books.body(2, None)
    await books.client.aclose()
