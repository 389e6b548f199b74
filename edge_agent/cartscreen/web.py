"""The cart-screen web app (Starlette): one page per cart, a JSON API, a WebSocket.

=====================================================  =====================================
``GET  /cart/{cart_id}``                               the page (static HTML/JS/CSS, no CDN)
``WS   /ws/cart/{cart_id}``                            live pushes (``CartScreenPush`` JSON)
``GET  /api/i18n``                                     strings, English and Chinese
``GET  /api/cart/{cart_id}/state``                     member, basket, coupons (one per
                                                        code), wallet (one per promotion),
                                                        list, recs
``POST /api/cart/{cart_id}/member``       ``{"qr": "SFM2..."}`` sign-in (or the demo's ``SFM:..``)
``POST /api/cart/{cart_id}/coupons/{code}/apply``      apply an issued coupon -> priced basket
``POST /api/cart/{cart_id}/coupons/{code}/remove``     take an applied coupon off the basket,
                                                        releasing its reservation -> priced
                                                        basket (404: unknown cart, or the
                                                        code is not applied on this cart)
``PUT  /api/cart/{cart_id}/list``                      ``{"skus": [...]}`` shopping list
``GET  /api/cart/{cart_id}/route``                     route through the list's shelves
``POST /api/cart/{cart_id}/checkout``                  payment QR (SVG) for the basket total
``POST /api/cart/{cart_id}/checkout/{id}/paid``        the screen's "I have paid" (only with
                                                        payment_confirmation = screen)
``POST /api/payments/notify``                          the payment provider's signed notice
                                                        -> sale, e-receipt (payment.py)
``GET  /api/cart/{cart_id}/receipt``                   the last e-receipt
``GET  /api/products?q=`` / ``/api/products/{sku}``    search, price check by barcode
``GET  /map.svg``                                      the store map
=====================================================  =====================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from edge_agent.cartscreen import i18n
from edge_agent.cartscreen.backend import CartScreenBackend, ScreenError
from edge_agent.cartscreen.payment import SIGNATURE_HEADER
from edge_agent.cartscreen.svgmap import render
from protocols.topics import valid_id

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MAX_BODY = 16 * 1024  # every request body here is a few hundred bytes


def wallet(coupons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The coupons as a shopper's wallet shows them: one entry per promotion (engine code)
    with the count of codes held, in the order first offered.

    ``code`` is the one code applying the entry applies: the applied one, or the usable
    code that expires first. The pricing engine gives a promotion's discount once per
    basket however many of its codes are in it, so an entry with a code applied offers no
    second one. A code the backend took from the ledger without its trigger rule is titled
    by its engine code; the entry takes its texts from a code that has the rule's.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in coupons:
        groups.setdefault(str(c["engine_code"]), []).append(c)
    out = []
    for engine_code, codes in groups.items():
        texts = next((c for c in codes if c.get("title") != engine_code), codes[0])
        applied = [c for c in codes if c.get("applied")]
        first = applied[0] if applied else min(codes, key=lambda c: c["expires_ms"])
        out.append({
            "engine_code": engine_code, "count": len(codes),
            "codes": [c["code"] for c in codes], "code": first["code"],
            "applied": bool(applied), "expires_ms": first["expires_ms"],
            **{k: texts.get(k, "") for k in ("title", "title_zh", "body", "body_zh")},
        })
    return out


def create_app(backend: CartScreenBackend, *, registry: CollectorRegistry) -> Starlette:
    bad = Counter("storefleet_cartscreen_bad_requests", "cart-screen requests refused",
                  ["reason"], registry=registry)
    map_svg = (render(backend.map, backend.grid)
               if backend.map is not None and backend.grid is not None else None)

    def cart_of(request: Request | WebSocket) -> str:
        cart_id = str(request.path_params["cart_id"])
        if not valid_id(cart_id):
            bad.labels(reason="bad_cart_id").inc()
            raise ScreenError(404, "bad cart id")
        return cart_id

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ScreenError(413, "body too large")
        try:
            doc = json.loads(raw or b"{}")
        except ValueError as err:
            raise ScreenError(400, "body is not JSON") from err
        if not isinstance(doc, dict):
            raise ScreenError(400, "body must be a JSON object")
        return doc

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ScreenError)
        bad.labels(reason=str(exc.status)).inc()
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    async def page(request: Request) -> Response:
        cart_of(request)
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def index(request: Request) -> Response:
        carts = sorted(set(backend.views) | set(backend.locations))
        links = "".join(f'<li><a href="/cart/{c}">{c}</a></li>' for c in carts)
        return Response(f"<!doctype html><meta charset=utf-8><title>carts</title>"
                        f"<h1>Cart screens</h1><ul>{links}</ul>", media_type="text/html")

    async def strings(request: Request) -> Response:
        return JSONResponse(i18n.table())

    async def state(request: Request) -> Response:
        cart_id = cart_of(request)
        loc = backend.locations.get(cart_id)
        try:
            basket: dict[str, Any] | None = backend.priced(cart_id)
        except ScreenError:
            basket = None
        coupons = await backend.coupons(cart_id)
        return JSONResponse({
            "cart_id": cart_id, "member": backend.member_view(cart_id), "basket": basket,
            "coupons": coupons, "wallet": wallet(coupons),
            "shopping_list": backend.view(cart_id).shopping_list,
            "recommendations": backend.recommendations(cart_id),
            "position": None if loc is None else {"zone": loc.zone, "shelf": loc.shelf},
            "receipt": backend.view(cart_id).receipt,
            "payment_confirmation": backend.payment_confirmation,
        })

    async def member(request: Request) -> Response:
        cart_id = cart_of(request)
        qr = str((await body(request)).get("qr", ""))
        return JSONResponse(await backend.sign_in(cart_id, qr))

    async def apply(request: Request) -> Response:
        cart_id = cart_of(request)
        code = str(request.path_params["code"])
        return JSONResponse(await backend.apply(cart_id, code))

    async def remove(request: Request) -> Response:
        """The applied entry's "Remove": the code goes back to the wallet and another cart
        of the member may apply it (``backend.remove``, decision 0019)."""
        cart_id = cart_of(request)
        code = str(request.path_params["code"])
        # A cart no screen has asked about cannot have a coupon applied; refusing here
        # also keeps a mistyped cart id from creating an empty view.
        if cart_id not in backend.views:
            bad.labels(reason="unknown_cart").inc()
            raise ScreenError(404, f"unknown cart {cart_id!r}")
        if code not in backend.view(cart_id).applied:  # a new session: nothing applied
            bad.labels(reason="coupon_not_applied").inc()
            raise ScreenError(404, f"coupon {code[:64]!r} is not applied on cart {cart_id!r}")
        return JSONResponse(await backend.remove(cart_id, code))

    async def put_list(request: Request) -> Response:
        cart_id = cart_of(request)
        skus = (await body(request)).get("skus", [])
        if not isinstance(skus, list) or not all(isinstance(s, str) for s in skus):
            raise ScreenError(400, "skus must be a list of strings")
        return JSONResponse({"shopping_list": backend.set_list(cart_id, skus)})

    async def route(request: Request) -> Response:
        return JSONResponse(backend.route(cart_of(request)))

    async def checkout(request: Request) -> Response:
        return JSONResponse(backend.checkout(cart_of(request)))

    async def paid(request: Request) -> Response:
        cart_id = cart_of(request)
        checkout_id = str(request.path_params["checkout_id"])
        return JSONResponse(await backend.confirm_by_screen(cart_id, checkout_id))

    async def payment_notice(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ScreenError(413, "body too large")
        return JSONResponse(await backend.notify(raw, request.headers.get(SIGNATURE_HEADER)))

    async def receipt(request: Request) -> Response:
        r = backend.view(cart_of(request)).receipt
        if r is None:
            raise ScreenError(404, "no receipt yet")
        return JSONResponse(r)

    async def products(request: Request) -> Response:
        q = request.query_params.get("q", "")[:64]
        return JSONResponse({"items": backend.search(q)})

    async def product(request: Request) -> Response:
        found = backend.product(str(request.path_params["sku"]))
        if found is None:
            raise ScreenError(404, "unknown product")
        return JSONResponse(found)

    async def store_map(request: Request) -> Response:
        if map_svg is None:
            raise ScreenError(404, "no store layout")
        return Response(map_svg, media_type="image/svg+xml")

    async def socket(websocket: WebSocket) -> None:
        cart_id = str(websocket.path_params["cart_id"])
        if not valid_id(cart_id):
            bad.labels(reason="bad_cart_id").inc()
            await websocket.close(code=1008)
            return
        await websocket.accept()
        with backend.hub.subscribe(cart_id) as queue:
            async def send() -> None:
                while True:
                    await websocket.send_text(await queue.get())

            sender = asyncio.create_task(send(), name=f"cartscreen-ws-{cart_id}")
            backend.hub.push(cart_id, "hello", {"cart_id": cart_id})
            try:
                while True:  # the page sends nothing we need; this notices the close
                    await websocket.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                pass
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect,
                                         RuntimeError):
                    await sender

    return Starlette(
        routes=[
            Route("/", index),
            Route("/cart/{cart_id}", page),
            Route("/map.svg", store_map),
            Route("/api/i18n", strings),
            Route("/api/cart/{cart_id}/state", state),
            Route("/api/cart/{cart_id}/member", member, methods=["POST"]),
            Route("/api/cart/{cart_id}/coupons/{code}/apply", apply, methods=["POST"]),
            Route("/api/cart/{cart_id}/coupons/{code}/remove", remove, methods=["POST"]),
            Route("/api/cart/{cart_id}/list", put_list, methods=["PUT"]),
            Route("/api/cart/{cart_id}/route", route),
            Route("/api/cart/{cart_id}/checkout", checkout, methods=["POST"]),
            Route("/api/cart/{cart_id}/checkout/{checkout_id}/paid", paid, methods=["POST"]),
            Route("/api/payments/notify", payment_notice, methods=["POST"]),
            Route("/api/cart/{cart_id}/receipt", receipt),
            Route("/api/products", products),
            Route("/api/products/{sku}", product),
            WebSocketRoute("/ws/cart/{cart_id}", socket),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={ScreenError: on_error},
    )
