"""The smallest load balancer that a scale-out test needs, as an httpx transport.

``FailoverTransport`` sends each request to the next of several API replicas in turn
(round robin) and, when a replica cannot be reached, to the next one. It stands in
for what a real deployment puts in front of the replicas: nginx (``proxy_next_upstream
error timeout``, ``max_fails``/``fail_timeout``) or HAProxy (``option redispatch``,
``retries``, ``check`` on ``/healthz``).

Like nginx, it passes a request on only when that is safe: a connection that was
refused (nothing was sent) for any method; one cut while the request was on its way
(the replica died mid-request) only for idempotent methods. A POST cut mid-request may
have been applied, so it is answered as a failure, never sent twice (nginx's default:
``non_idempotent`` off).

Plug it into the fleet client, so the calls are the ones the CLI makes::

    FleetClient("http://api", token=..., transport=FailoverTransport([url_a, url_b]))
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Sequence

import httpx

# RFC 9110 section 9.2.2; what nginx treats as safe to pass to the next upstream.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class FailoverTransport(httpx.BaseTransport):
    """Round robin over ``upstreams`` (base URLs such as ``http://127.0.0.1:8001``).

    ``answered`` counts answers by upstream, ``passed_on`` the requests that one
    upstream could not take and the next did (by upstream and error class)."""

    def __init__(self, upstreams: Sequence[str], *, timeout: float = 10.0) -> None:
        if not upstreams:
            raise ValueError("at least one upstream")
        self._upstreams = [httpx.URL(u) for u in upstreams]
        self._next = itertools.cycle(range(len(self._upstreams)))
        self._lock = threading.Lock()  # the fleet client may be shared by threads
        self._http = httpx.HTTPTransport()
        self.answered: Counter[str] = Counter()
        self.passed_on: Counter[tuple[str, str]] = Counter()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            first = next(self._next)
        last_error: httpx.TransportError | None = None
        for i in range(len(self._upstreams)):
            upstream = self._upstreams[(first + i) % len(self._upstreams)]
            request.url = request.url.copy_with(
                scheme=upstream.scheme, host=upstream.host, port=upstream.port)
            try:
                response = self._http.handle_request(request)
            except httpx.ConnectError as err:  # nothing sent: any method may go on
                last_error = err
            except httpx.TransportError as err:
                if request.method not in IDEMPOTENT:
                    raise
                last_error = err
            else:
                with self._lock:
                    self.answered[str(upstream)] += 1
                return response
            with self._lock:
                self.passed_on[(str(upstream), type(last_error).__name__)] += 1
        assert last_error is not None
        raise last_error

    def close(self) -> None:
        self._http.close()
