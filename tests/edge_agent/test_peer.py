"""The primary's peer server and a secondary's ``PeerTransport`` (decision 0049), over
real HTTP: the real cloud API under uvicorn behind the request-recording proxy of
``test_artifacts``, the primary's ``ArtifactCache`` served by ``PeerServer``, the
secondaries' ``ArtifactCache``s routed through ``PeerTransport``.

Concurrent requests for one artifact make one cloud download; a secondary's partial
download resumes from the primary with ``Range``; tokens other than the store's are
401 and another store's price book 403 (counted); a primary that cannot serve (503),
refuses the caller (401), is gone, or is not a peer server at all sends the secondary
to the cloud, counted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from edge_agent.app import Agent
from edge_agent.errors import ConfigError
from edge_agent.kernel.artifacts import ArtifactApi, ArtifactCache
from edge_agent.metrics import registry_scoped
from edge_agent.peer.artifacts import PeerArtifacts
from edge_agent.peer.server import PeerServer, PeerServerMetrics, peer_app
from edge_agent.peer.transport import PeerClientMetrics, PeerTransport
from protocols.signed import load_public_keys
from tests.cloud.conftest import DEVICE, DEVICE_S1, auth
from tests.edge_agent.helpers import make_config
from tests.edge_agent.test_artifacts import BODY, SHA, TARGET, Cloud, cloud_with
from tests.services import Mosquitto, free_port


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def cache_of(cloud: Cloud, root: Path, registry: CollectorRegistry, *,
             url: str | None = None, token: str = DEVICE_S1) -> ArtifactCache:
    return ArtifactCache(root, api=ArtifactApi(url or cloud.url, token=token),
                         keys=load_public_keys(k["public_key"]
                                               for k in cloud.signer.public_keys()),
                         registry=registry)


@contextlib.asynccontextmanager
async def primary(cloud: Cloud, tmp_path: Path, registry: CollectorRegistry, *,
                  cloud_url: str | None = None) -> AsyncIterator[str]:
    """The primary's server over its own (rollout) artifact cache; yields its URL."""
    cache = cache_of(cloud, tmp_path / "primary" / "cas", registry, url=cloud_url)
    app = peer_app(store_id="s1", tokens={DEVICE_S1}, books=None,
                   artifacts=PeerArtifacts(content=None, updates=cache),
                   metrics=PeerServerMetrics(registry))
    server = PeerServer(app, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()
        await cache.api.aclose()


async def secondary(cloud: Cloud, root: Path, registry: CollectorRegistry, url: str, *,
                    token: str = DEVICE_S1) -> ArtifactCache:
    cache = cache_of(cloud, root, registry, token=token)
    await cache.api.route_through(PeerTransport(
        url, metrics=registry_scoped(registry, "peer-client", PeerClientMetrics)))
    return cache


def cloud_downloads(cloud: Cloud) -> list[str | None]:
    return [rng for line, rng in cloud.proxy.requests if f"{SHA}/content" in line]


async def test_one_cloud_download_for_concurrent_boxes_and_range_resume(
        tmp_path: Path) -> None:
    registry = CollectorRegistry()
    async with cloud_with(tmp_path) as cloud, primary(cloud, tmp_path, registry) as url:
        boxes = [(CollectorRegistry(), tmp_path / f"box{i}" / "cas") for i in range(4)]
        caches = [await secondary(cloud, root, reg, url) for reg, root in boxes]
        paths = await asyncio.gather(*(c.fetch(SHA, target=TARGET) for c in caches))
        assert all(p.read_bytes() == BODY for p in paths)
        assert cloud_downloads(cloud) == [None]  # one download for the four boxes
        # the first manifest request fetched the artifact, the others joined or found it
        served = {(w, s): sample(registry, "storefleet_peer_served_total", what=w, source=s)
                  for w in ("manifest", "artifact") for s in ("cache", "upstream", "coalesced")}
        assert sum(n for (_, s), n in served.items() if s == "upstream") == 1
        assert sum(n for (w, _), n in served.items() if w == "manifest") == 4
        assert sum(n for (w, _), n in served.items() if w == "artifact") == 4
        assert sample(registry, "storefleet_peer_served_bytes_total", what="artifact") == \
            4 * len(BODY)
        for reg, _ in boxes:
            assert sample(reg, "storefleet_peer_client_requests_total", what="artifact",
                          via="peer") == 1

        # A box cut off halfway resumes from the primary: only the rest is sent.
        reg, root = CollectorRegistry(), tmp_path / "box5" / "cas"
        (root / "partial").mkdir(parents=True)
        (root / "partial" / f"{SHA}.part").write_bytes(BODY[:1000])
        resumed = await secondary(cloud, root, reg, url)
        assert (await resumed.fetch(SHA, target=TARGET)).read_bytes() == BODY
        assert sample(reg, "storefleet_artifact_resumed_total") == 1
        assert sample(reg, "storefleet_artifact_downloaded_bytes_total") == len(BODY) - 1000
        assert sample(registry, "storefleet_peer_served_bytes_total", what="artifact") == \
            5 * len(BODY) - 1000
        assert cloud_downloads(cloud) == [None]
        for c in (*caches, resumed):
            await c.api.aclose()

        async with httpx.AsyncClient(base_url=url, headers=auth(DEVICE_S1)) as http:
            r = await http.get(f"/api/v1/artifacts/{SHA}/content",
                               headers={"Range": "bytes=-10"})
            assert r.status_code == 206 and r.content == BODY[-10:]
            assert r.headers["content-range"] == \
                f"bytes {len(BODY) - 10}-{len(BODY) - 1}/{len(BODY)}"
            r = await http.get(f"/api/v1/artifacts/{SHA}/content",
                               headers={"Range": f"bytes={len(BODY)}-"})
            assert r.status_code == 416 and r.headers["content-range"] == \
                f"bytes */{len(BODY)}"
            r = await http.get(f"/api/v1/artifacts/{SHA}")
            assert r.status_code == 200 and r.json() == cloud.original


async def test_other_tokens_401_other_stores_403_counted(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    async with cloud_with(tmp_path) as cloud, primary(cloud, tmp_path, registry) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            for headers in ({}, auth(DEVICE), {"Authorization": f"Basic {DEVICE_S1}"}):
                r = await http.get(f"/api/v1/artifacts/{SHA}/content", headers=headers)
                assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            r = await http.get("/api/v1/stores/s2/price-book/wire", headers=auth(DEVICE_S1))
            assert r.status_code == 403
        assert sample(registry, "storefleet_peer_refused_total", reason="token") == 3
        assert sample(registry, "storefleet_peer_refused_total", reason="store") == 1
        assert cloud_downloads(cloud) == []  # nothing was fetched for a refused caller

        # A box whose token the primary refuses gets the artifact from the cloud.
        reg = CollectorRegistry()
        other = await secondary(cloud, tmp_path / "other" / "cas", reg, url, token=DEVICE)
        assert (await other.fetch(SHA, target=TARGET)).read_bytes() == BODY
        await other.api.aclose()
        assert sample(reg, "storefleet_peer_fallbacks_total", reason="http_401") == 2
        assert sample(reg, "storefleet_peer_client_requests_total", what="artifact",
                      via="cloud") == 1
        assert cloud_downloads(cloud) == [None]


async def test_a_primary_that_cannot_serve_sends_the_box_to_the_cloud(
        tmp_path: Path) -> None:
    registry, reg = CollectorRegistry(), CollectorRegistry()
    dead = f"http://127.0.0.1:{free_port()}"  # the primary's uplink is down
    async with cloud_with(tmp_path) as cloud, \
            primary(cloud, tmp_path, registry, cloud_url=dead) as url:
        box = await secondary(cloud, tmp_path / "box" / "cas", reg, url)
        assert (await box.fetch(SHA, target=TARGET)).read_bytes() == BODY
        assert sample(registry, "storefleet_peer_failed_total", what="manifest",
                      reason="network") == 1
        assert sample(reg, "storefleet_peer_fallbacks_total", reason="http_503") == 2
        assert cloud_downloads(cloud) == [None]

        # The primary itself gone: no connection, the cloud at once.
        gone = await secondary(cloud, tmp_path / "gone" / "cas", reg, dead)
        assert (await gone.fetch(SHA, target=TARGET)).read_bytes() == BODY
        assert sample(reg, "storefleet_peer_fallbacks_total", reason="unreachable") == 2

        # Something else at the primary's address (here the cloud itself, a wrong
        # primary_url): its answers lack the peer header, so the box asks the cloud.
        wrong = await secondary(cloud, tmp_path / "wrong" / "cas", reg, cloud.url)
        assert (await wrong.fetch(SHA, target=TARGET)).read_bytes() == BODY
        assert sample(reg, "storefleet_peer_fallbacks_total", reason="not_peer") == 2
        for c in (box, gone, wrong):
            await c.api.aclose()


def test_a_primary_without_the_store_token_or_a_secondary_with_a_port_is_refused(
        tmp_path: Path) -> None:
    for peer, wanted in (({}, "device token"), ({"primary_url": "http://10.0.0.2:8790",
                                                  "port": 8790}, "does not listen")):
        cfg = make_config(tmp_path, uplink=Mosquitto(workdir=tmp_path), local=None,
                          modules={"peer": peer})
        with pytest.raises(ConfigError, match=wanted):
            Agent(cfg, registry=CollectorRegistry())
