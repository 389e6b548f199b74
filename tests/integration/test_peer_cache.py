"""The store's peer cache end to end (decision 0049): the real cloud under uvicorn with
ingest (every request it answers counted by an ASGI wrapper), real Mosquitto, real
agents of one store: a primary with ``[peer]`` serving, secondaries pointed at it.

The boxes share the store's id and device token. The store has one MQTT session (the
primary's; client id = store id), so each secondary's uplink is its own Mosquitto,
bridged from the cloud broker for the store's ``content/#`` downlink (a real
Mosquitto bridge: the retained manifest reaches the secondaries as it reaches the
primary).

- Three boxes: the asset and the price book's body are downloaded from the cloud once;
  every box applies the same manifest, with the same verified bytes, and the same book.
- The primary's cached asset and book body changed on its disk: a new secondary refuses
  the bytes the primary serves (``tampered``, ``body_hash``), counted, and applies
  neither.
- The primary stopped: the secondaries fall back to the cloud (counted) for a new
  manifest's asset and a new book, and apply both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

from cloud.main import create_app
from cloud.promotions.signing import SnapshotSigner
from edge_agent.app import Agent
from edge_agent.cartscreen.server import EmbeddedServer
from edge_agent.config import AgentConfig
from edge_agent.modules.content import Content
from edge_agent.modules.peer import Peer
from edge_agent.modules.till import Till
from protocols import topics
from tests.cloud.conftest import ADMIN, DEVICE, auth, make_settings
from tests.edge_agent.helpers import make_config, metric, new_store_id, running_agent, wait_until
from tests.services import Mosquitto, free_port

pytestmark = [pytest.mark.mosquitto]


class Counted:
    """The cloud app, counting every HTTP request it is asked (method, path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: Counter[tuple[str, str]] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests[(scope["method"], scope["path"])] += 1
        await self.app(scope, receive, send)

    def gets(self, path: str) -> int:
        return self.requests[("GET", path)]


class Store:
    """The cloud and the boxes of one store."""

    def __init__(self, tmp_path: Path, brokers: Callable[..., Mosquitto]) -> None:
        self.tmp_path = tmp_path
        self.brokers = brokers
        self.broker = brokers()
        self.signer, self.release = SnapshotSigner.generate(), SnapshotSigner.generate()
        self.store_id = new_store_id()
        self.url = f"http://127.0.0.1:{free_port()}"
        self.peer_port = free_port()
        self.cloud = Counted(create_app(
            make_settings(f"sqlite:///{tmp_path / 'cloud.db'}", self.broker.url,
                          artifact_dir=str(tmp_path / "blobs")),
            registry=CollectorRegistry(), signer=self.signer, release=self.release,
            ingest=True))

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[httpx.AsyncClient]:
        port = int(self.url.rsplit(":", 1)[1])
        server = EmbeddedServer(uvicorn.Config(self.cloud, host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="on"))
        task = asyncio.create_task(server.serve(), name="peer-test-cloud")
        try:
            while not server.started:
                assert not task.done(), "uvicorn did not start"
                await asyncio.sleep(0.02)
            async with httpx.AsyncClient(base_url=self.url, headers=auth(ADMIN),
                                         timeout=30) as http:
                yield http
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 30)

    def config(self, name: str, *, primary: bool) -> AgentConfig:
        if primary:
            uplink, peer = self.broker, {"host": "127.0.0.1", "port": self.peer_port}
        else:  # its own broker, bridged from the cloud's for the store's downlink
            uplink = self.brokers(
                f"connection cloud\naddress 127.0.0.1:{self.broker.port}\n"
                f"remote_clientid bridge-{name}\n"
                f"topic {topics.store_root(self.store_id)}/content/# in 1\n")
            peer = {"primary_url": f"http://127.0.0.1:{self.peer_port}"}
        return make_config(self.tmp_path / name, uplink=uplink, local=self.brokers(),
                           store_id=self.store_id, modules={
            "content": {"cloud_api": self.url, "cloud_api_token": DEVICE, "retry_s": 0.2,
                        "trusted_keys": [self.signer.public_keys()[0]["public_key"]],
                        "release_keys": [self.release.public_keys()[0]["public_key"]]},
            "till": {"cloud_api": self.url, "cloud_api_token": DEVICE,
                     "trusted_keys": [self.signer.public_keys()[0]["public_key"]],
                     "refresh_interval_s": 0.5},
            "peer": peer})


async def upload(http: httpx.AsyncClient, body: bytes, version: str) -> str:
    r = await http.post("/api/v1/artifacts", content=body,
                        params={"kind": "asset", "target": "content", "version": version})
    assert r.status_code == 201, r.text
    return str(r.json()["payload"]["sha256"])


async def publish(http: httpx.AsyncClient, store: str, sha: str, tag: str) -> None:
    r = await http.post("/api/v1/content/publish", json={
        "stores": [store], "documents": {"schedule": {"version": tag}},
        "assets": [{"sha256": sha, "name": f"{tag}.wav"}]})
    assert r.status_code == 201, r.text


async def publish_book(http: httpx.AsyncClient, price: int) -> int:
    r = await http.post("/api/v1/price-books", json={"currency": "EUR", "items": [
        {"sku": "apple", "name": "Apple", "price": price},
        {"sku": "pear", "name": "Pear", "price": 99}]})
    assert r.status_code == 201, r.text
    return int(r.json()["version"])


def applied(agent: Agent) -> int | None:
    content = agent.get(Content).applied
    return content.manifest.version if content else None


def book(agent: Agent) -> int | None:
    return agent.get(Till).pos.pricebook.version


def served(agent: Agent, what: str) -> dict[str, float]:
    return {source: metric(agent, "storefleet_peer_served_total", what=what, source=source)
            for source in ("cache", "upstream", "coalesced")}


async def test_one_download_per_store_tampering_refused_primary_down_falls_back(
        tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto]) -> None:
    store = Store(tmp_path, mosquitto_factory)
    body_path = f"/api/v1/stores/{store.store_id}/price-book/wire/body"
    async with store.serving() as http, contextlib.AsyncExitStack() as boxes:
        v1 = await publish_book(http, 120)
        primary_stack = contextlib.AsyncExitStack()  # closed early below, or at the end
        boxes.push_async_callback(primary_stack.aclose)
        primary = await primary_stack.enter_async_context(
            running_agent(store.config("primary", primary=True)))
        assert primary.get(Peer).server is not None
        seconds = [await boxes.enter_async_context(running_agent(
            store.config(f"box{i}", primary=False))) for i in (1, 2)]
        everyone = [primary, *seconds]

        # The store's price book: the primary's till and both secondaries' have it.
        await wait_until(lambda: all(book(a) == v1 for a in everyone), within_s=20,
                         what="every box applied price book 1")
        # The manifest reaches all three boxes at once (the secondaries through their
        # bridges): the primary's own fetch and both secondaries' requests share one
        # download.
        jingle = b"RIFF" + bytes(range(256)) * 400
        sha = await upload(http, jingle, "jingle-1")
        await publish(http, store.store_id, sha, "day-1")
        await wait_until(lambda: all(applied(a) == 1 for a in everyone), within_s=20,
                         what="every box applied manifest 1")

        assert store.cloud.gets(f"/api/v1/artifacts/{sha}/content") == 1
        assert store.cloud.gets(body_path) == 1
        for agent in everyone:
            assert (agent.config.data_dir / "content" / "cas" / sha).read_bytes() == jingle
            catalog = agent.get(Till).pos.catalog.catalog
            assert catalog is not None and catalog.items["apple"].price == 120
        # The primary served each secondary the asset (from its cache or the one
        # download), and the book's body to them and its own till (in process).
        assert sum(served(primary, "artifact").values()) == 2
        bodies = served(primary, "book_body")
        assert bodies["upstream"] == 1 and bodies["cache"] + bodies["coalesced"] == 2
        assert metric(primary, "storefleet_peer_served_bytes_total", what="artifact") == \
            2 * len(jingle)
        for box in seconds:
            assert metric(box, "storefleet_peer_client_requests_total", what="artifact",
                          via="peer") == 1
            assert metric(box, "storefleet_peer_client_requests_total", what="book_body",
                          via="peer") == 1
            assert metric(box, "storefleet_peer_fallbacks_total", reason="unreachable") == 0

        # The primary's copies changed on its disk: a new secondary refuses what it serves.
        cached = primary.config.data_dir / "content" / "cas" / sha
        data = bytearray(cached.read_bytes())
        data[100] ^= 0xFF
        cached.write_bytes(bytes(data))
        books = sorted((primary.config.data_dir / "peer" / "books").glob("*.zst"))
        assert [p.name for p in books] == [f"{v1}-full.zst"]
        books[0].write_bytes(books[0].read_bytes()[:-1] + b"\x00")
        third = await boxes.enter_async_context(running_agent(
            store.config("box3", primary=False)))
        await wait_until(lambda: metric(third, "storefleet_content_manifests_total",
                                        result="asset") == 1, within_s=20,
                         what="the third box refused the tampered asset")
        assert metric(third, "storefleet_artifact_refused_total", reason="tampered") == 1
        assert applied(third) is None
        await wait_until(lambda: metric(third, "storefleet_pos_cache_refresh_total",
                                        what="pricebook", result="body_hash") >= 1,
                         within_s=20, what="the third box refused the tampered book")
        assert book(third) is None and store.cloud.gets(body_path) == 1
        assert not (third.config.data_dir / "content" / "cas" / sha).exists()
        assert store.cloud.gets(f"/api/v1/artifacts/{sha}/content") == 1
        seconds.append(third)

        # The primary goes away: new content and a new book come from the cloud.
        await primary_stack.aclose()
        v2 = await publish_book(http, 125)
        sha2 = await upload(http, b"RIFF" + bytes(range(255, -1, -1)) * 300, "jingle-2")
        await publish(http, store.store_id, sha2, "day-2")
        await wait_until(lambda: all(applied(a) == 2 and book(a) == v2 for a in seconds),
                         within_s=30, what="the secondaries applied manifest 2 and book 2")
        assert store.cloud.gets(f"/api/v1/artifacts/{sha2}/content") == 3  # once per box
        for box in seconds:
            assert metric(box, "storefleet_peer_fallbacks_total", reason="unreachable") >= 2
            assert metric(box, "storefleet_peer_client_requests_total", what="artifact",
                          via="cloud") >= 1
            catalog = box.get(Till).pos.catalog.catalog
            assert catalog is not None and catalog.items["apple"].price == 125
