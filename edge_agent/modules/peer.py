"""The store's peer cache (``[peer]``, decision 0049): one box fetches, the others ask it.

    [peer]                                   # the primary: the box with the uplink
    host = "0.0.0.0"
    port = 8790

    [peer]                                   # every other box of the store
    primary_url = "http://10.0.0.2:8790"

**The primary** serves the cloud's artifact and price-book wire paths to the store's
other boxes (``edge_agent.peer.server``) from its own caches: ``[content]``'s and
``[updates]``'s artifact caches and a copy of the price book its ``[till]`` fetches
(``edge_agent.peer.books``, in ``<data_dir>/peer/books``); a miss is fetched once from
the cloud with the primary's own credentials and verified before it is served. Its own
till asks the same book cache (in process, no socket), so the store's book is
downloaded once for every box, the primary's included. Callers must present the
store's device token, the ``cloud_api_token`` of those sections (at least one must be
set: the primary never serves unauthenticated).

**A secondary** keeps its sections' ``cloud_api`` (the cloud) and tokens as they are;
this module routes its ``[content]``, ``[updates]`` and ``[till]`` HTTP clients through
``edge_agent.peer.transport.PeerTransport``: what the primary serves is asked of it,
the rest (promotions, coupon ranges, redemptions) goes to the cloud as before, and the
cloud again when the primary does not answer (counted). The secondary verifies every
signature and hash itself: the primary is trusted no more than the cloud's signatures.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import Field, model_validator

from edge_agent.errors import ConfigError
from edge_agent.kernel.artifacts import ArtifactApi
from edge_agent.kernel.module import Module, ModuleSettings
from edge_agent.metrics import registry_scoped
from edge_agent.modules.content import Content
from edge_agent.modules.till import Till
from edge_agent.modules.updates import Updates
from edge_agent.peer.artifacts import PeerArtifacts
from edge_agent.peer.books import BookCache
from edge_agent.peer.server import PeerServer, PeerServerMetrics, peer_app
from edge_agent.peer.transport import PeerClientMetrics, PeerTransport
from edge_agent.pos.cache import CloudApi

if TYPE_CHECKING:
    from edge_agent.kernel.module import Kernel
    from edge_agent.kernel.supervisor import Supervisor

logger = logging.getLogger(__name__)

# The address a primary's own till uses to reach its book cache in process (never
# resolved: the request is handed to the app, not sent).
_IN_PROCESS = "http://peer.in-process"


class PeerSettings(ModuleSettings):
    # A secondary: the primary's base URL. Absent: this box is the primary and serves.
    primary_url: str | None = Field(default=None, pattern=r"^https?://[^/]+/?$")
    host: str = "0.0.0.0"  # the primary listens on the store network
    port: int = Field(default=8790, ge=0, le=65535)  # 0: any free port (tests)
    # A header from the cloud says "this is the newest book": kept this long (seconds).
    book_header_ttl_s: float = Field(default=5.0, ge=0)
    books_kept: int = Field(default=8, ge=1)  # price-book bodies kept on the primary
    # A secondary gives up on the primary and asks the cloud after this long without a
    # connection (the store LAN answers in ms) ...
    connect_timeout_s: float = Field(default=2.0, gt=0)
    # ... or without an answer: the primary may be downloading a release for it first.
    wait_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _one_role(self) -> PeerSettings:
        if self.primary_url is not None and "port" in self.model_fields_set:
            raise ValueError("a secondary (primary_url set) does not listen: drop port")
        return self


class Peer(Module):
    name = "peer"
    Settings = PeerSettings
    after = ("content", "updates", "till")

    def __init__(self, kernel: Kernel, settings: PeerSettings) -> None:
        super().__init__(kernel, settings)
        content, updates, till = (kernel.module(n) for n in ("content", "updates", "till"))
        self.content = content if isinstance(content, Content) else None
        self.updates = updates if isinstance(updates, Updates) else None
        self.till = till if isinstance(till, Till) and till.pos.api is not None else None
        self.client_metrics = registry_scoped(kernel.registry, "peer-client",
                                              PeerClientMetrics)
        self.server: PeerServer | None = None
        self.books: BookCache | None = None
        self._app: Any = None
        if settings.primary_url is None:
            self._app = self._primary_app()

    @property
    def primary(self) -> bool:
        return self.settings.primary_url is None

    def _tokens(self) -> set[str]:
        sections = (m.settings for m in (self.content, self.updates, self.till) if m)
        return {t.get_secret_value() for s in sections if (t := s.cloud_api_token)}

    def _primary_app(self) -> Any:
        tokens = self._tokens()
        if not tokens:
            raise ConfigError("peer", "the primary serves only the store's device token: "
                              "set cloud_api_token in [content], [updates] or [till]")
        if self.till is not None:
            till = self.till
            token = till.settings.cloud_api_token
            client = httpx.AsyncClient(
                base_url=till.settings.cloud_api or "", timeout=30.0,
                headers={"Authorization": f"Bearer {token.get_secret_value()}"}
                if token else {})
            self.books = BookCache(self.kernel.data_dir / "peer" / "books",
                                   store_id=self.kernel.store_id, client=client,
                                   keys=lambda: till.pos.pricebook.keys,
                                   clock=self.kernel.clock,
                                   ttl_s=self.settings.book_header_ttl_s,
                                   kept=self.settings.books_kept)
        artifacts = None
        if self.content is not None or self.updates is not None:
            artifacts = PeerArtifacts(content=self.content.cache if self.content else None,
                                      updates=self.updates.cache if self.updates else None)
        metrics = registry_scoped(self.kernel.registry, "peer-server", PeerServerMetrics)
        return peer_app(store_id=self.kernel.store_id, tokens=tokens, artifacts=artifacts,
                        books=self.books, metrics=metrics)

    def _transport(self) -> PeerTransport:
        """One per client: a client closes its transport when it closes."""
        s = self.settings
        if s.primary_url is not None:
            return PeerTransport(s.primary_url, metrics=self.client_metrics,
                                 connect_timeout_s=s.connect_timeout_s, wait_s=s.wait_s)
        return PeerTransport(_IN_PROCESS, metrics=self.client_metrics,
                             peer=httpx.ASGITransport(app=self._app,
                                                      raise_app_exceptions=False))

    async def open(self) -> None:
        """Route the modules' clients before any of them runs (they are open, idle)."""
        apis: list[ArtifactApi | CloudApi] = []
        if not self.primary:
            apis += [m.cache.api for m in (self.content, self.updates) if m is not None]
        if self.till is not None and self.till.pos.api is not None:
            apis.append(self.till.pos.api)  # the primary's own till: its book cache
        for api in apis:
            await api.route_through(self._transport())
        logger.info("store %s: peer cache %s", self.kernel.store_id,
                    "primary" if self.primary else f"secondary of {self.settings.primary_url}")

    async def start(self, tasks: Supervisor) -> None:
        if self._app is not None:
            self.server = PeerServer(self._app, host=self.settings.host,
                                     port=self.settings.port)
            await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()

    async def close(self) -> None:
        if self.books is not None:
            await self.books.client.aclose()

    def diagnostics(self) -> dict[str, Any]:
        return {"role": "primary" if self.primary else "secondary",
                "primary_url": self.settings.primary_url,
                "port": self.server.port if self.server is not None else None}


MODULE = Peer
