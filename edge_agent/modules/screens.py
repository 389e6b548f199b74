"""The store's screen playlists from its content manifest (``[screens]``; on by default,
decision 0051).

    [screens]
    port = 8091            # /signage?zone=Z, /screens/now, /screens/asset/{sha256};
                           # 0: any free port; unset: only on the cart screens' server
    host = "0.0.0.0"

HQ publishes the chain's playlists (``cloud.screens``) as the ``playlists`` document of
each store's signed content manifest, with the store's time zone, and the images and
videos as the manifest's assets of ``doc`` ``playlists``. When the content module
applies a manifest, this module takes the document (``edge_agent.screens.player``) and
reports it as the ``playlists`` part of the store's content status with the time, so
HQ sees when the store's screens took it. An invalid document is refused (counted,
logged, named in the part's ``detail``) and the playlists already loaded stay.

The screens ask the box over HTTP (``edge_agent.screens.web``): on the cart screens'
server when the in-aisle module runs one (same origin: the cart page shows the ``cart``
playlist when idle), and on a server of their own in the agent's loop when ``port`` is
set (signage without carts). The list follows the store's local time at every request,
so windows open and close with the cloud away. Cards show the till's live promotion
(``[till]``); without a till they are left out.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from edge_agent.cartscreen.server import CartScreenServer
from edge_agent.kernel.module import Module, ModuleSettings
from edge_agent.metrics import registry_scoped
from edge_agent.modules.content import AppliedContent, Content
from edge_agent.modules.in_aisle import InAisleModule
from edge_agent.modules.till import Till
from edge_agent.screens.player import PlaylistsRefused, ScreenPlayer, ScreensMetrics
from edge_agent.screens.web import screens_app
from protocols.screens import DOCUMENT

if TYPE_CHECKING:
    from edge_agent.kernel.module import Kernel
    from edge_agent.kernel.supervisor import Supervisor
    from pricing import PromotionSnapshot

logger = logging.getLogger(__name__)


class ScreensSettings(ModuleSettings):
    port: int | None = Field(default=None, ge=0, le=65535)
    host: str = "0.0.0.0"


class Screens(Module):
    name = "screens"
    Settings = ScreensSettings
    default_on: ClassVar[bool] = True
    after = ("content", "till", "in_aisle")

    def __init__(self, kernel: Kernel, settings: ScreensSettings) -> None:
        super().__init__(kernel, settings)
        content = kernel.module("content")
        self.content = content if isinstance(content, Content) else None
        till = kernel.module("till")
        self._till = till if isinstance(till, Till) else None
        in_aisle = kernel.module("in_aisle")
        self._in_aisle = in_aisle if isinstance(in_aisle, InAisleModule) else None
        self.player = ScreenPlayer(
            store_id=kernel.store_id, promotions=self._promotions,
            metrics=registry_scoped(kernel.registry, "screens", ScreensMetrics))
        self.server: CartScreenServer | None = None

    def _promotions(self) -> PromotionSnapshot | None:
        if self._till is None:
            return None
        promotions = self._till.pos.promotions
        compiled = promotions.ruleset("pos") or promotions.ruleset("cart")
        return compiled[0] if compiled is not None else None

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.kernel.clock.now_ms() / 1000, dt.UTC)

    @property
    def url(self) -> str | None:
        return self.server.url if self.server is not None else None

    @property
    def cart_url(self) -> str | None:
        """The cart screens' server, when it serves the screens too."""
        server = self._in_aisle.in_aisle.server if self._in_aisle is not None else None
        return server.url if server is not None else None

    async def start(self, tasks: Supervisor) -> None:
        app = screens_app(self.player, now=self._now, registry=self.kernel.registry)
        carts = self._in_aisle.in_aisle.server if self._in_aisle is not None else None
        if carts is not None:  # started by the in-aisle module, which starts first
            carts.add_routes(app.routes)
            logger.info("signage at %s/signage?zone=... (the cart screens' server)",
                        carts.url)
        if self.settings.port is not None:
            self.server = CartScreenServer(app, host=self.settings.host,
                                           port=self.settings.port)
            await self.server.start()
            logger.info("signage at %s/signage?zone=...", self.server.url)
        if self.content is not None:
            self.content.on_applied(self._on_applied)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    def diagnostics(self) -> dict[str, Any]:
        return {"playlists_version": self.player.version, "url": self.url,
                "cart_url": self.cart_url}

    def _on_applied(self, applied: AppliedContent) -> None:
        assert self.content is not None  # registered only with a content module
        try:
            playlists = self.player.load(applied)
        except PlaylistsRefused as err:
            logger.error("screens: %s; the loaded playlists (v%s) stay", err,
                         self.player.version)
            self.content.report_part(DOCUMENT, self.player.version or 0,
                                     applied_ms=self.kernel.clock.now_ms(), detail=str(err))
            return
        if playlists is None:
            return  # this manifest carries no playlists: what was loaded stays
        logger.info("screens: playlists v%d from content manifest %d (%s)",
                    playlists.version, applied.manifest.version, playlists.timezone)
        self.content.report_part(DOCUMENT, playlists.version,
                                 applied_ms=self.kernel.clock.now_ms())


MODULE = Screens
