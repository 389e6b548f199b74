"""The screens' HTTP side (Starlette), served by the box in its own loop:

=====================================  ===============================================
``GET /screens/now?surface=&zone=``    what that surface shows in that zone now (JSON;
                                       ``surface``: ``signage`` (default) or ``cart``;
                                       no zone: only what is not limited to zones)
``GET /screens/asset/{sha256}``        an image or video the playlists name, from the
                                       content cache (immutable: named by its hash)
``GET /signage?zone=``                 the signage page: rotates the items (static
                                       HTML/JS, no CDN), asking for the list again
                                       before each item, so a new publish or a window
                                       that opens shows within one item
=====================================  ===============================================
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edge_agent.screens.player import ScreenPlayer
from protocols.screens import SURFACES
from protocols.topics import valid_id

STATIC = Path(__file__).with_name("static")
SNIFF_BYTES = 16  # the longest signature below (WebP: RIFF....WEBP) fits in 12
# (prefix, offset, media type): the formats a signage screen's browser plays
SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF8", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"ftyp", 4, "video/mp4"),
    (b"\x1aE\xdf\xa3", 0, "video/webm"),
    (b"<svg", 0, "image/svg+xml"),
)


def media_type(head: bytes) -> str:
    for prefix, offset, kind in SIGNATURES:
        if head[offset:offset + len(prefix)] == prefix:
            return kind
    return "application/octet-stream"


def _head(path: Path) -> bytes | None:
    try:
        with path.open("rb") as f:
            return f.read(SNIFF_BYTES)
    except FileNotFoundError:
        return None


def screens_app(player: ScreenPlayer, *, now: Callable[[], dt.datetime],
                registry: CollectorRegistry) -> Starlette:
    bad = Counter("storefleet_screens_bad_requests", "Screen requests refused, by reason",
                  ["reason"], registry=registry)

    def refuse(status: int, reason: str, detail: str) -> Response:
        bad.labels(reason=reason).inc()
        return JSONResponse({"detail": detail}, status_code=status)

    async def playing(request: Request) -> Response:
        surface = request.query_params.get("surface", "signage")
        zone = request.query_params.get("zone") or None
        if surface not in SURFACES:
            return refuse(400, "bad_surface", f"surface is one of {', '.join(SURFACES)}")
        if zone is not None and not valid_id(zone):
            return refuse(400, "bad_zone", "bad zone id")
        return JSONResponse(player.now(surface=surface,  # type: ignore[arg-type]
                                       zone=zone, at=now()),
                            headers={"Cache-Control": "no-store"})

    async def asset(request: Request) -> Response:
        sha256 = str(request.path_params["sha256"])
        path = player.asset(sha256)
        head = None if path is None else await asyncio.to_thread(_head, path)  # disk read
        if path is None or head is None:
            # not named by the playlists, or gone (a newer manifest dropped it)
            return refuse(404, "unknown_asset", "no such asset in the playlists")
        return FileResponse(path, media_type=media_type(head),
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})

    async def signage(request: Request) -> Response:
        return FileResponse(STATIC / "signage.html", media_type="text/html; charset=utf-8")

    return Starlette(routes=[
        Route("/screens/now", playing),
        Route("/screens/asset/{sha256}", asset),
        Route("/signage", signage),
        Mount("/screens/static", app=StaticFiles(directory=STATIC), name="screens-static"),
    ])
