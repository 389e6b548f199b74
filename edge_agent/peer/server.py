"""The primary's HTTP server for the other boxes of its store (decision 0049).

    app = peer_app(store_id="S001", tokens={token}, artifacts=artifacts, books=books,
                   metrics=PeerServerMetrics(registry))
    server = PeerServer(app, host="0.0.0.0", port=8790); await server.start()

The cloud's own paths, so that a box asks the primary exactly what it would ask the
cloud (``edge_agent.peer.transport``):

- ``GET /api/v1/artifacts/{sha256}``: the signed manifest, as the cloud signed it;
- ``GET /api/v1/artifacts/{sha256}/content``: the bytes, one ``Range`` answered 206
  (a box resumes a cut download from the primary as from the cloud), past the end 416;
- ``GET /api/v1/stores/{id}/price-book/wire[?base=]``: the cloud's answer, relayed;
- ``GET /api/v1/stores/{id}/price-book/wire/body?version=[&base=]``: the zstd body.

**Who may ask**: a bearer token equal to one of the store's own device tokens, the ones
the primary itself uses towards the cloud (``cloud_api_token`` of its ``[content]``,
``[updates]`` and ``[till]``). The boxes of one store are provisioned with the same
store credential, so the primary needs no second secret to distribute or rotate, and a
token that the cloud would not accept for this store is not accepted here either
(compared in constant time). Anything else is 401, and a price book of another store
403; both counted in ``storefleet_peer_refused_total{reason}`` and logged.

What the primary cannot serve (the cloud unreachable, something that did not verify)
is a problem+json 503 or 502: the box then asks the cloud itself. Served requests are
counted by where the answer came from (``storefleet_peer_served_total{what,source}``:
``cache``, ``upstream`` (this request fetched it), ``coalesced`` (it waited for another
request's fetch)) and the bytes sent (``storefleet_peer_served_bytes_total{what}``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import socket
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_agent.cartscreen.server import EmbeddedServer
from edge_agent.errors import AgentError
from edge_agent.kernel.artifacts import CHUNK, ArtifactRefused, ArtifactUnavailable
from edge_agent.peer.artifacts import PeerArtifacts
from edge_agent.peer.books import BookCache, BookError, BookRefused
from edge_agent.peer.transport import PEER_HEADER
from protocols.problems import TYPE_BASE
from protocols.ranges import RangeNotSatisfiable, byte_range

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PeerServerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.served = Counter(
            "storefleet_peer_served", "Requests of the store's boxes answered, by what and "
            "where from (cache, upstream: fetched for it, coalesced: waited for a fetch)",
            ["what", "source"], registry=registry)
        self.bytes = Counter(
            "storefleet_peer_served_bytes", "Bytes sent to the store's boxes", ["what"],
            registry=registry)
        self.refused = Counter(
            "storefleet_peer_refused", "Requests refused: token (401), store (403)",
            ["reason"], registry=registry)
        self.failed = Counter(
            "storefleet_peer_failed", "Requests not served (the box asks the cloud), by "
            "what and reason", ["what", "reason"], registry=registry)


def _problem(status: int, reason: str, detail: str) -> JSONResponse:
    return JSONResponse({"type": TYPE_BASE + reason, "title": reason,
                         "status": status, "detail": detail}, status_code=status,
                        media_type="application/problem+json")


def peer_app(*, store_id: str, tokens: Collection[str], artifacts: PeerArtifacts | None,
             books: BookCache | None, metrics: PeerServerMetrics) -> Starlette:
    if not tokens:
        raise ValueError("the peer server needs the store's device token")
    wanted = [t.encode() for t in tokens]

    def allowed(request: Request) -> Response | None:
        """None when the caller holds the store's token, else the refusal (counted)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip().encode()
        ok = scheme.lower() == "bearer" and any(hmac.compare_digest(given, t) for t in wanted)
        if not ok:
            metrics.refused.labels(reason="token").inc()
            logger.warning("peer: %s from %s refused: not the store's device token",
                           request.url.path, request.client.host if request.client else "?")
            response = _problem(401, "token", "the store's device token is required")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        store = request.path_params.get("store_id")
        if store is not None and store != store_id:
            metrics.refused.labels(reason="store").inc()
            logger.warning("peer: %s refused: this box serves store %s", request.url.path,
                           store_id)
            return _problem(403, "store", f"this box serves store {store_id}")
        return None

    def failed(what: str, err: AgentError, reason: str) -> Response:
        metrics.failed.labels(what=what, reason=reason).inc()
        logger.warning("peer: %s not served (%s): %s", what, reason, err)
        refused = isinstance(err, ArtifactRefused | BookRefused)
        return _problem(502 if refused else 503, reason, str(err))

    async def manifest(request: Request) -> Response:
        return await artifact(request, what="manifest")

    async def content(request: Request) -> Response:
        return await artifact(request, what="artifact")

    async def artifact(request: Request, *, what: str) -> Response:
        if (refusal := allowed(request)) is not None:
            return refusal
        sha256 = request.path_params["sha256"]
        if not _SHA256.match(sha256):
            return _problem(404, "not_found", "not a sha256")
        if artifacts is None:
            return failed(what, ArtifactUnavailable("not_served", sha256, "no cache"),
                          "not_served")
        try:
            entry = await artifacts.get(sha256)
        except (ArtifactUnavailable, ArtifactRefused) as err:
            return failed(what, err, err.reason)
        metrics.served.labels(what=what, source=entry.source).inc()
        if what == "manifest":
            response = JSONResponse(entry.signed)
            metrics.bytes.labels(what=what).inc(len(response.body))
            return response
        return await _file(request, entry.path, etag=f'"{sha256}"', what=what,
                           metrics=metrics, media_type="application/octet-stream")

    async def header(request: Request) -> Response:
        if (refusal := allowed(request)) is not None:
            return refusal
        if books is None:
            return failed("book_header", BookError("not_served", "no till"), "not_served")
        try:
            base = _int_param(request, "base")
            reply = await books.header(base)
        except ValueError:
            return _problem(422, "invalid", "base is not a version")
        except BookError as err:
            return failed("book_header", err, err.reason)
        metrics.served.labels(what="book_header", source=reply.source).inc()
        metrics.bytes.labels(what="book_header").inc(len(reply.body))
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)

    async def body(request: Request) -> Response:
        if (refusal := allowed(request)) is not None:
            return refusal
        if books is None:
            return failed("book_body", BookError("not_served", "no till"), "not_served")
        try:
            version = _int_param(request, "version")
            if version is None:
                raise ValueError("version")
            path, source = await books.body(version, _int_param(request, "base"))
        except ValueError:
            return _problem(422, "invalid", "version and base are versions")
        except BookError as err:
            return failed("book_body", err, err.reason)
        metrics.served.labels(what="book_body", source=source).inc()
        return await _file(request, path, etag=None, what="book_body", metrics=metrics,
                           media_type="application/zstd")

    return Starlette(middleware=[Middleware(_Marked)], routes=[
        Route("/api/v1/artifacts/{sha256}", manifest),
        Route("/api/v1/artifacts/{sha256}/content", content),
        Route("/api/v1/stores/{store_id}/price-book/wire", header),
        Route("/api/v1/stores/{store_id}/price-book/wire/body", body),
    ])


class _Marked:
    """Adds ``PEER_HEADER`` to every answer: the boxes tell the primary's answers (a
    relayed 404 included) from those of whatever else may listen at its address."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (PEER_HEADER.encode(), b"1")]
            await send(message)

        await self.app(scope, receive, marked)


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    value = int(raw)  # ValueError: answered 422
    if value < 1:
        raise ValueError(name)
    return value


async def _file(request: Request, path: Path, *, etag: str | None, what: str,
                metrics: PeerServerMetrics, media_type: str) -> Response:
    """The file, or the one range asked (an ``If-Range`` other than ``etag``: all)."""
    try:
        size = (await asyncio.to_thread(path.stat)).st_size
    except FileNotFoundError:  # evicted between the lookup and now: the box asks again
        metrics.failed.labels(what=what, reason="evicted").inc()
        logger.warning("peer: %s evicted while serving it", path.name)
        return _problem(503, "evicted", "evicted while serving; ask again")
    if_range = request.headers.get("if-range")
    try:
        wanted = None if if_range is not None and if_range != etag else \
            byte_range(request.headers.get("range"), size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = wanted or (0, size)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start)}
    if etag is not None:
        headers["ETag"] = etag
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return StreamingResponse(_read(path, start, end, what=what, metrics=metrics),
                             status_code=206 if wanted is not None else 200,
                             headers=headers, media_type=media_type)


async def _read(path: Path, start: int, end: int, *, what: str,
                metrics: PeerServerMetrics) -> AsyncIterator[bytes]:
    """The bytes ``[start, end)``, read in a worker thread chunk by chunk; opened only
    once the response starts, so a request that is never sent holds no file."""
    f: Any = await asyncio.to_thread(open, path, "rb")
    try:
        await asyncio.to_thread(f.seek, start)
        at = start
        while at < end:
            chunk = await asyncio.to_thread(f.read, min(CHUNK, end - at))
            if not chunk:  # shorter than it was (replaced meanwhile): cut, the box resumes
                metrics.failed.labels(what=what, reason="short_file").inc()
                raise OSError(f"{path.name}: ended at byte {at} of {end}")
            at += len(chunk)
            metrics.bytes.labels(what=what).inc(len(chunk))
            yield chunk
    finally:
        await asyncio.to_thread(f.close)


class PeerServerError(AgentError):
    """The peer server could not start (its port taken)."""


class PeerServer:
    """The app under uvicorn as a task of the agent's loop (as the cart screens are)."""

    def __init__(self, app: Starlette, *, host: str, port: int) -> None:
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))  # here, so that port 0 resolves and errors are ours
        except OSError as err:
            self._sock.close()
            raise PeerServerError(f"peer cache cannot listen on {host}:{port}: {err}") from err
        self.port = int(self._sock.getsockname()[1])
        self._server = EmbeddedServer(uvicorn.Config(app, log_level="warning", lifespan="off",
                                                     access_log=False))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]),
                                         name="peer-http")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise PeerServerError("the peer server stopped during start-up")
            await asyncio.sleep(0.02)
        logger.info("peer cache serving the store's boxes on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(self._task, timeout=10)
            except TimeoutError:
                self._task.cancel()
                logger.warning("peer server did not stop in time")
            self._task = None
        self._sock.close()
