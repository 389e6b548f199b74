"""What the store's screens show now: the applied ``playlists`` document, evaluated in
the store's time zone, with promotion cards filled from the till's live promotions.

    player = ScreenPlayer(store_id="S001", promotions=lambda: snapshot, metrics=metrics)
    player.load(applied)                                  # from Content.on_applied
    player.now(surface="signage", zone="bakery", at=now)  # JSON for a screen
    player.asset("ab12...")                               # the verified file, or None

Only assets the document names are served, from the content cache where the content
module verified them (sha256, release signature) before it switched. A document that
does not validate is refused (counted, logged): the playlists already loaded stay.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from pydantic import ValidationError

from edge_agent.errors import AgentError
from edge_agent.screens.cards import card
from protocols.screens import DOCUMENT, ScreenPlaylists, Surface

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from edge_agent.modules.content import AppliedContent
    from pricing import PromotionSnapshot

logger = logging.getLogger(__name__)


class PlaylistsRefused(AgentError):
    """An applied manifest's ``playlists`` document that is not valid."""


class ScreensMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.documents = Counter(
            "storefleet_screens_documents", "Playlists documents taken from applied "
            "manifests, by result (loaded, invalid)", ["result"], registry=registry)
        self.cards_skipped = Counter(
            "storefleet_screens_cards_skipped", "Promotion cards left out of a screen's "
            "list, by reason (no_snapshot: the till holds no promotions, unknown: not in "
            "its snapshot, not_live: outside its validity or times)", ["reason"],
            registry=registry)


class ScreenPlayer:
    def __init__(self, *, store_id: str, metrics: ScreensMetrics,
                 promotions: Callable[[], PromotionSnapshot | None]) -> None:
        self.store_id = store_id
        self.metrics = metrics
        self._promotions = promotions
        self.playlists: ScreenPlaylists | None = None
        self._cas: Path | None = None
        self._assets: frozenset[str] = frozenset()
        self._warned: set[tuple[str, str]] = set()  # (promotion, reason) logged once

    @property
    def version(self) -> int | None:
        return self.playlists.version if self.playlists else None

    def load(self, applied: AppliedContent) -> ScreenPlaylists | None:
        """Take the manifest's document (None: the manifest has none, nothing changes);
        ``PlaylistsRefused`` when it does not validate."""
        doc = applied.manifest.documents.get(DOCUMENT)
        if doc is None:
            return None
        try:
            playlists = ScreenPlaylists.model_validate(doc)
        except ValidationError as err:
            self.metrics.documents.labels(result="invalid").inc()
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or DOCUMENT
            raise PlaylistsRefused(f"playlists of manifest {applied.manifest.version} "
                                   f"invalid at {where}: {first['msg']}") from err
        self.playlists, self._cas = playlists, applied.cas
        self._assets = frozenset(playlists.assets())
        self._warned.clear()
        self.metrics.documents.labels(result="loaded").inc()
        return playlists

    def asset(self, sha256: str) -> Path | None:
        if self._cas is None or sha256 not in self._assets:
            return None
        return self._cas / sha256

    def now(self, *, surface: Surface, zone: str | None, at: dt.datetime) -> dict[str, Any]:
        """The items ``surface`` in ``zone`` shows at ``at``, in order, ready to render."""
        playlists = self.playlists
        if playlists is None:
            return {"version": None, "timezone": None, "local_time": None,
                    "surface": surface, "zone": zone, "items": []}
        local = playlists.local(at)
        snapshot: PromotionSnapshot | None = None
        items: list[dict[str, Any]] = []
        for playlist, item in playlists.playing(surface=surface, zone=zone, at=at):
            out: dict[str, Any] = {"id": item.id, "playlist": playlist.name,
                                   "kind": item.kind, "title": item.title,
                                   "duration_s": item.duration_s}
            if item.kind == "card":
                assert item.promotion_id is not None  # a card has one (protocols.screens)
                snapshot = snapshot or self._promotions()
                promotion, why = card(snapshot, item.promotion_id, local=local,
                                      store_id=self.store_id)
                if promotion is None:
                    self._skipped(item.promotion_id, why)
                    continue
                out["card"] = promotion
            else:
                out["url"] = f"/screens/asset/{item.sha256}"
            items.append(out)
        return {"version": playlists.version, "timezone": playlists.timezone,
                "local_time": local.isoformat(timespec="seconds"), "surface": surface,
                "zone": zone, "items": items}

    def _skipped(self, promotion_id: str, why: str) -> None:
        self.metrics.cards_skipped.labels(reason=why).inc()
        if (promotion_id, why) not in self._warned:  # a screen asks every few seconds
            self._warned.add((promotion_id, why))
            logger.warning("screens: card for promotion %s left out (%s)", promotion_id, why)
