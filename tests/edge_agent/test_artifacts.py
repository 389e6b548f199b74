"""The box's artifact cache against the real cloud API served by uvicorn (decision 0036):
downloads cut halfway (the connection closed, or the process killed with SIGKILL)
resume with Range; unsigned, wrongly signed, tampered, oversized and wrong-target
artifacts are refused, counted and never cached."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from sqlalchemy import update

from cloud.db.models_artifacts import Artifact
from cloud.main import create_app
from cloud.promotions.signing import SnapshotSigner
from cloud.publish import MemoryPublisher
from edge_agent.app import Agent
from edge_agent.cartscreen.server import EmbeddedServer
from edge_agent.commands import CommandError
from edge_agent.errors import ConfigError
from edge_agent.kernel.artifacts import (
    ArtifactApi,
    ArtifactCache,
    ArtifactRefused,
    ArtifactUnavailable,
)
from edge_agent.modules.updates import FetchArgs, Updates
from protocols.signed import load_public_keys
from tests.cloud.conftest import ADMIN, DEVICE_S1, auth, make_settings
from tests.edge_agent.helpers import make_config
from tests.services import Mosquitto, free_port

BODY = os.urandom(3 * 1024 * 1024 + 123)  # several reads and writes, not a round size
SHA = hashlib.sha256(BODY).hexdigest()
TARGET = "firmware:esl/ap-1"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Cut:
    """A real TCP proxy in front of the API that records each request line and Range, and
    can cut (close) or stall the next content response after ``after`` body bytes."""

    upstream_port: int
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    mode: str | None = None  # None | "cut" | "stall" | "drop" (the next request unanswered)
    after: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        state: dict[str, Any] = {"budget": None}

        async def upstream() -> None:
            while data := await reader.read(65536):
                head = data.decode("latin-1")
                line = head.split("\r\n", 1)[0]
                rng = next((h.split(":", 1)[1].strip() for h in head.split("\r\n")
                            if h.lower().startswith("range:")), None)
                self.requests.append((line, rng))
                if self.mode == "drop":  # what a server closing an idle connection does
                    self.mode = None
                    writer.transport.abort()
                    return
                if "/content" in line and self.mode is not None:
                    state["budget"], state["mode"] = self.after, self.mode
                    self.mode = None
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            headers_done = False
            while data := await up_reader.read(65536):
                if state["budget"] is not None:
                    if not headers_done:
                        head, sep, rest = data.partition(b"\r\n\r\n")
                        headers_done = bool(sep)
                        writer.write(head + sep)
                        data = rest
                    take = min(len(data), state["budget"])
                    writer.write(data[:take])
                    state["budget"] -= take
                    await writer.drain()
                    if state["budget"] == 0:
                        if state["mode"] == "stall":
                            await asyncio.sleep(3600)  # until the client is killed
                        writer.transport.abort()  # cut: no clean end of the body
                        return
                    continue
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.transport.abort()
        up_writer.transport.abort()


@dataclass
class Cloud:
    url: str  # through the proxy
    proxy: Cut
    app: Any
    signer: SnapshotSigner
    blobs: Path
    original: dict[str, Any]  # the signed manifest as uploaded

    def set_signed(self, **changes: Any) -> None:
        with self.app.state.cloud.writer.begin() as session:
            row = session.get(Artifact, SHA)
            signed = dict(row.signed)
            signed.update(changes.pop("doc", {}))
            signed["payload"] = {**signed["payload"], **changes}
            session.expire_all()
            session.execute(update(Artifact).where(Artifact.sha256 == SHA)
                            .values(signed=signed))


@contextlib.asynccontextmanager
async def cloud_with(tmp_path: Path, *, body: bytes = BODY,
                     target: str = TARGET) -> AsyncIterator[Cloud]:
    signer = SnapshotSigner.generate()
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'cloud.db'}",
                                   artifact_dir=str(tmp_path / "blobs")),
                     registry=CollectorRegistry(), publisher=MemoryPublisher(), release=signer)
    port = free_port()
    server = EmbeddedServer(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(), name="artifact-test-api")
    proxy = Cut(upstream_port=port)
    listener = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            r = await http.post("/api/v1/artifacts", content=body, headers=auth(ADMIN),
                                params={"kind": "firmware", "target": target,
                                        "version": "1.0"})
            assert r.status_code == 201, r.text
        yield Cloud(url=url, proxy=proxy, app=app, signer=signer, blobs=tmp_path / "blobs",
                    original=r.json())
    finally:
        listener.close()
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def box(cloud: Cloud, tmp_path: Path, registry: CollectorRegistry,
        **kw: Any) -> ArtifactCache:
    keys = kw.pop("keys", None) or cloud.signer.public_keys()
    return ArtifactCache(tmp_path / "box" / "cas",
                         api=ArtifactApi(cloud.url, token=DEVICE_S1),
                         keys=load_public_keys(k["public_key"] for k in keys),
                         registry=registry, **kw)


def refused(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("storefleet_artifact_refused_total",
                                     {"reason": reason}) or 0.0


def content_requests(cloud: Cloud) -> list[str | None]:
    return [rng for line, rng in cloud.proxy.requests if "/content" in line]


async def test_cut_connection_resumes_with_range(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    async with cloud_with(tmp_path) as cloud:
        cache = box(cloud, tmp_path, registry)
        half = len(BODY) // 2
        cloud.proxy.mode, cloud.proxy.after = "cut", half
        with pytest.raises(ArtifactUnavailable) as cut:
            await cache.fetch(SHA, target=TARGET)
        assert cut.value.reason == "network"
        partial = tmp_path / "box" / "cas" / "partial" / f"{SHA}.part"
        kept = partial.stat().st_size
        assert 0 < kept <= half and partial.read_bytes() == BODY[:kept]

        path = await cache.fetch(SHA, target=TARGET)
        assert content_requests(cloud) == [None, f"bytes={kept}-"]  # the rest, not all
        assert path.read_bytes() == BODY and not partial.exists()
        assert cache.manifest(SHA) is not None
        assert registry.get_sample_value("storefleet_artifact_resumed_total") == 1
        # received once in all: the half before the cut and the rest after it
        assert registry.get_sample_value("storefleet_artifact_downloaded_bytes_total") \
            == len(BODY)
        assert await cache.fetch(SHA, target=TARGET) == path  # cached: no new download
        assert len(content_requests(cloud)) == 2
        await cache.api.aclose()


async def test_a_keep_alive_connection_closed_by_the_server_is_sent_once_more(
    tmp_path: Path,
) -> None:
    """The server closes an idle pooled connection just as the box reuses it: the request
    gets no answer at all. Sent once more on a new connection, the fetch goes on."""
    registry = CollectorRegistry()
    async with cloud_with(tmp_path) as cloud:
        cache = box(cloud, tmp_path, registry)
        await cache.api.manifest(SHA)  # the connection is now in the pool
        cloud.proxy.mode = "drop"
        path = await cache.fetch(SHA, target=TARGET)
        assert path.read_bytes() == BODY
        manifests = [line for line, _ in cloud.proxy.requests if "/content" not in line]
        assert len(manifests) == 3  # the first, the one dropped, the one sent again
        assert registry.get_sample_value("storefleet_artifact_fetches_total",
                                         {"result": "downloaded"}) == 1
        await cache.api.aclose()


_KILLED_CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from prometheus_client import CollectorRegistry
    from edge_agent.kernel.artifacts import ArtifactApi, ArtifactCache
    from protocols.signed import load_public_keys
    url, token, key, root, sha, target = sys.argv[1:]
    cache = ArtifactCache(Path(root), api=ArtifactApi(url, token=token),
                          keys=load_public_keys([key]), registry=CollectorRegistry())
    asyncio.run(cache.fetch(sha, target=target))
""")


async def test_download_killed_with_sigkill_resumes(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    async with cloud_with(tmp_path) as cloud:
        cloud.proxy.mode, cloud.proxy.after = "stall", len(BODY) // 3
        root = tmp_path / "box" / "cas"
        partial = root / "partial" / f"{SHA}.part"
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _KILLED_CHILD, cloud.url, DEVICE_S1,
            cloud.signer.public_keys()[0]["public_key"], str(root), SHA, TARGET, cwd=REPO)
        try:
            deadline = time.monotonic() + 30
            # what reached the file; the last few bytes may sit in the child's buffers
            while not (partial.exists() and partial.stat().st_size >= len(BODY) // 4):
                assert child.returncode is None, "the child ended before it was killed"
                assert time.monotonic() < deadline, "the child wrote nothing"
                await asyncio.sleep(0.05)
        finally:
            if child.returncode is None:
                child.send_signal(signal.SIGKILL)
            await asyncio.wait_for(child.wait(), 10)
        kept = partial.stat().st_size
        assert partial.read_bytes() == BODY[:kept]

        cache = box(cloud, tmp_path, registry)
        assert (await cache.fetch(SHA, target=TARGET)).read_bytes() == BODY
        assert content_requests(cloud) == [None, f"bytes={kept}-"]
        await cache.api.aclose()


async def test_tampered_oversized_and_wrong_target_are_refused(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    async with cloud_with(tmp_path) as cloud:
        cache = box(cloud, tmp_path, registry)
        with pytest.raises(ArtifactRefused, match="made for 'firmware:esl/ap-1'"):
            await cache.fetch(SHA, target="firmware:esl/ap-2")  # another model's firmware
        assert content_requests(cloud) == []  # refused before a byte was fetched

        blob = cloud.blobs / SHA[:2] / SHA
        tampered = bytearray(BODY)
        tampered[len(BODY) // 2] ^= 0x01  # one bit of one byte
        blob.write_bytes(bytes(tampered))
        with pytest.raises(ArtifactRefused) as bad:
            await cache.fetch(SHA, target=TARGET)
        assert bad.value.reason == "tampered"

        blob.write_bytes(BODY + b"extra")  # more bytes than the signed size
        with pytest.raises(ArtifactRefused) as big:
            await cache.fetch(SHA, target=TARGET)
        assert big.value.reason == "size"
        cas = tmp_path / "box" / "cas"
        assert not (cas / SHA).exists() and list((cas / "partial").iterdir()) == []
        await cache.api.aclose()
    assert refused(registry, "target") == 1
    assert refused(registry, "tampered") == 1
    assert refused(registry, "size") == 1


async def test_unsigned_and_wrongly_signed_manifests_are_refused(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    async with cloud_with(tmp_path) as cloud:
        cache = box(cloud, tmp_path, registry)
        cloud.set_signed(size=len(BODY) + 1)  # the payload changed after signing
        with pytest.raises(ArtifactRefused) as changed:
            await cache.fetch(SHA, target=TARGET)
        assert changed.value.reason == "signature"

        cloud.set_signed(size=len(BODY), doc={"signature": "", "key_id": ""})
        with pytest.raises(ArtifactRefused) as unsigned:
            await cache.fetch(SHA, target=TARGET)
        assert unsigned.value.reason == "unsigned"

        cloud.set_signed(doc=cloud.original)  # signed again, by the release key
        other = SnapshotSigner.generate()  # but this box trusts another key only
        stranger = box(cloud, tmp_path, registry, keys=other.public_keys())
        with pytest.raises(ArtifactRefused) as untrusted:
            await stranger.fetch(SHA, target=TARGET)
        assert untrusted.value.reason == "untrusted_key"
        assert (await cache.fetch(SHA, target=TARGET)).read_bytes() == BODY  # trusted: fine
        assert len(content_requests(cloud)) == 1  # only that last one fetched bytes
        await cache.api.aclose()
        await stranger.api.aclose()
    assert refused(registry, "signature") == 1
    assert refused(registry, "unsigned") == 1
    assert refused(registry, "untrusted_key") == 1


async def test_the_updates_module_fetches_into_the_agents_cache(tmp_path: Path) -> None:
    async with cloud_with(tmp_path) as cloud:
        key = cloud.signer.public_keys()[0]["public_key"]
        section = {"cloud_api": cloud.url, "cloud_api_token": DEVICE_S1, "trusted_keys": [key]}
        cfg = make_config(tmp_path, uplink=Mosquitto(workdir=tmp_path), local=None,
                          modules={"updates": section})
        registry = CollectorRegistry()
        updates = Agent(cfg, registry=registry).module("updates")
        assert isinstance(updates, Updates)
        fetch = updates.commands()["fetch_artifact"].run
        assert await fetch(FetchArgs(sha256=SHA, target=TARGET)) == {"sha256": SHA,
                                                                      "size": len(BODY)}
        assert (cfg.data_dir / "cas" / SHA).read_bytes() == BODY
        with pytest.raises(CommandError, match="target: made for"):
            await fetch(FetchArgs(sha256=SHA, target="firmware:esl/ap-2"))
        assert refused(registry, "target") == 1
        await updates.close()

        # A release key is required (no trust on first use for code), and must parse.
        for bad, field in (({**section, "trusted_keys": []}, "updates.trusted_keys"),
                           ({**section, "trusted_keys": ["nope"]}, "updates.trusted_keys")):
            with pytest.raises(ConfigError) as err:
                Agent(make_config(tmp_path, uplink=Mosquitto(workdir=tmp_path), local=None,
                                  modules={"updates": bad}), registry=CollectorRegistry())
            assert err.value.field == field


async def test_the_cache_evicts_least_recently_used_unreferenced_entries(
    tmp_path: Path,
) -> None:
    registry = CollectorRegistry()
    async with cloud_with(tmp_path) as cloud:
        small = {}
        async with httpx.AsyncClient(base_url=cloud.url, timeout=30) as http:
            for version in ("a", "b", "c"):
                data = version.encode() * 1000
                r = await http.post("/api/v1/artifacts", content=data, headers=auth(ADMIN),
                                    params={"kind": "model", "target": "model:vision",
                                            "version": version})
                assert r.status_code == 201, r.text
                small[version] = r.json()["payload"]["sha256"]
        in_use: set[str] = set()
        # room for two 1000-byte models beside the 3 MB firmware, which stays in use
        cache = box(cloud, tmp_path, registry, max_bytes=len(BODY) + 2000,
                    keep=lambda: in_use)
        in_use.add(SHA)
        await cache.fetch(SHA, target=TARGET)
        for version in ("a", "b"):
            await cache.fetch(small[version], target="model:vision")
            await asyncio.sleep(0.02)  # distinct modification times
        assert await cache.evict() == []  # within the bound
        await cache.fetch(small["c"], target="model:vision")
        cas = tmp_path / "box" / "cas"
        assert not (cas / small["a"]).exists() and not (cas / f"{small['a']}.json").exists()
        assert all((cas / sha).exists() for sha in (SHA, small["b"], small["c"]))
        assert registry.get_sample_value("storefleet_artifact_evicted_total") == 1
        await cache.api.aclose()
