"""A box's HTTP towards the cloud, with what the store's primary caches asked of the
primary instead (decision 0049).

    transport = PeerTransport("http://10.0.0.2:8790", metrics=metrics)
    await content.cache.api.route_through(transport)   # the same URL and token as before

A ``GET`` of a path the primary serves (``what_of``: an artifact's signed manifest and
bytes, the store's price-book wire header and body) goes to the primary, path, query
and headers unchanged (the box's own bearer token with it); every other request goes to
the cloud as before. When the primary gives no answer (no connection within
``connect_timeout_s``, no response head within ``wait_s``: it may be downloading a
large artifact for us), refuses (401, 403, any 5xx: it cannot serve this) or is not a
peer server at all (no ``Storefleet-Peer`` header: a wrong ``primary_url``, a proxy in
the way), the same request goes to the cloud: counted in
``storefleet_peer_fallbacks_total{reason}`` and logged, so a failed primary never stops
a secondary's content. A 4xx the primary relays from the cloud (404 nothing published,
416) is the answer.

Nothing from the primary is trusted more than the cloud: the callers verify signatures,
sizes and hashes exactly as they do for the cloud's answers, and refuse a bad one.
"""

from __future__ import annotations

import logging
import re

import httpx
from prometheus_client import CollectorRegistry, Counter

logger = logging.getLogger(__name__)

# Every answer of a primary's peer server carries it; one without is not the primary's.
PEER_HEADER = "storefleet-peer"

_PEERED = (
    (re.compile(r"^/api/v1/artifacts/[0-9a-f]{64}$"), "manifest"),
    (re.compile(r"^/api/v1/artifacts/[0-9a-f]{64}/content$"), "artifact"),
    (re.compile(r"^/api/v1/stores/[^/]+/price-book/wire$"), "book_header"),
    (re.compile(r"^/api/v1/stores/[^/]+/price-book/wire/body$"), "book_body"),
)


def what_of(method: str, path: str) -> str | None:
    """What a request asks of the primary's caches (the metric label), or None."""
    if method != "GET":
        return None
    return next((what for pattern, what in _PEERED if pattern.match(path)), None)


class PeerClientMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "storefleet_peer_client_requests", "Requests for what the store's primary "
            "caches, by what and where they were answered (peer, cloud: the fallback)",
            ["what", "via"], registry=registry)
        self.fallbacks = Counter(
            "storefleet_peer_fallbacks", "Requests sent to the cloud because the primary "
            "did not answer (unreachable, timeout), could not serve (http_<status>) or is "
            "not a peer server (not_peer)",
            ["reason"], registry=registry)


class PeerTransport(httpx.AsyncBaseTransport):
    """``primary``: the primary's base URL; ``peer`` / ``cloud``: the transports to each
    (default: plain HTTP; the primary's own till gets its server in process)."""

    def __init__(self, primary: str, *, metrics: PeerClientMetrics,
                 peer: httpx.AsyncBaseTransport | None = None,
                 cloud: httpx.AsyncBaseTransport | None = None,
                 connect_timeout_s: float = 2.0, wait_s: float = 300.0) -> None:
        self.primary = httpx.URL(primary)
        self.metrics = metrics
        self._peer = peer or httpx.AsyncHTTPTransport()
        self._cloud = cloud or httpx.AsyncHTTPTransport()
        self._connect_timeout_s = connect_timeout_s
        self._wait_s = wait_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        what = what_of(request.method, request.url.path)
        if what is None:
            return await self._cloud.handle_async_request(request)
        try:
            response = await self._peer.handle_async_request(self._to_primary(request))
        except httpx.TimeoutException as err:
            reason, detail = "timeout", repr(err)
        except httpx.TransportError as err:
            reason, detail = "unreachable", repr(err)
        else:
            status = response.status_code
            if PEER_HEADER not in response.headers:
                reason = "not_peer"  # a wrong primary_url, a proxy: not our primary
            elif status in (401, 403) or status >= 500:
                reason = f"http_{status}"
            else:
                self.metrics.requests.labels(what=what, via="peer").inc()
                return response
            await response.aclose()
            detail = f"HTTP {status}"
        self.metrics.fallbacks.labels(reason=reason).inc()
        self.metrics.requests.labels(what=what, via="cloud").inc()
        logger.warning("peer %s did not serve %s (%s: %s); asking the cloud", self.primary,
                       request.url.path, reason, detail)
        return await self._cloud.handle_async_request(request)

    def _to_primary(self, request: httpx.Request) -> httpx.Request:
        url = self.primary.copy_with(path=request.url.path, query=request.url.query or None)
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "host"]
        timeout = dict(request.extensions.get("timeout") or {})
        timeout.update(connect=self._connect_timeout_s, read=self._wait_s)
        return httpx.Request("GET", url, headers=headers,
                             extensions={**request.extensions, "timeout": timeout})

    async def aclose(self) -> None:
        await self._peer.aclose()
        await self._cloud.aclose()
