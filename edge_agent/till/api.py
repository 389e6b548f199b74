"""The lanes' HTTP + JSON API and the cashier screen (FastAPI, served by the box).

=============================================================  ==============================
``GET    /till/``                                              the cashier screen (static)
``GET    /till/openapi.json`` / ``/till/docs``                 the OpenAPI document / its UI
``GET    /till/v1/lane``                                       who this token is: lane, store
``POST   /till/v1/baskets``                                    open a basket
``GET    /till/v1/baskets/{basket_id}``                        the basket, priced
``DELETE /till/v1/baskets/{basket_id}``                        void it
``POST   /till/v1/baskets/{basket_id}/items``                  ``{"code", "qty"}``: scan
``DELETE /till/v1/baskets/{basket_id}/items/{code}?qty=``      take units off (all: no qty)
``PUT    /till/v1/baskets/{basket_id}/member``          ``{"code"}``/``{"member_id"}``/``{"phone"}``
``DELETE /till/v1/baskets/{basket_id}/member``
``PUT    /till/v1/baskets/{basket_id}/order``                  ``{"order_id"}``: collect a pickup
``DELETE /till/v1/baskets/{basket_id}/order``                  order paid here (decision 0069)
``POST   /till/v1/baskets/{basket_id}/coupons``                ``{"code"}``
``DELETE /till/v1/baskets/{basket_id}/coupons/{code}``
``PUT    /till/v1/baskets/{basket_id}/tender``                 ``{"method", "cash_given", ...}``
``POST   /till/v1/baskets/{basket_id}/complete``               -> sale, receipt (printed)
``POST   /till/v1/sales``          a whole sale at once (lines, order, member, tender) -> sale
``GET    /till/v1/sales/{sale_id}``                            a sale's lines, returned units
``POST   /till/v1/sales/{sale_id}/refund``                     ``{"lines": {line_id: qty}}``
=============================================================  ==============================

Every ``/till/v1`` call carries its lane's token (``Authorization: Bearer ...``); a
missing or wrong one is 401 (``storefleet_lanes_unauthorized_total{why}``). Every refusal
answers ``{"reason": ..., "detail": ...}`` with a 4xx (5xx: the till cannot price yet,
or the cloud a phone look-up needs is away) and is counted in
``storefleet_lanes_refused_total{reason}``. Money is integer minor units.

Handlers answer ``JSONResponse`` themselves: the response models document the shapes in
the OpenAPI document without FastAPI validating every answer again on the hot path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from edge_agent.till.members import MemberRef
from edge_agent.till.service import LaneError, LaneTills, OrderIn, SaleIn, TenderIn
from edge_agent.till.settings import LaneSettings
from protocols.ids import ID_PATTERN, Id

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MAX_BODY = 16 * 1024  # every request body here is a few hundred bytes
PREFIX = "/till/v1"


class Refusal(BaseModel):
    reason: str = Field(description="machine-readable: unknown_item, short_tender, ...")
    detail: Any = Field(description="for the cashier and the log")


class ScanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Id = Field(description="the scanned code: the catalog's sku")
    qty: int = Field(default=1, ge=1, le=100_000)


class CouponIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Id


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cashier: str | None = Field(default=None, max_length=40, description="on the receipt")


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: dict[Id, Annotated[int, Field(ge=1, le=100_000)]] | None = Field(
        default=None, max_length=500, description="line id -> units; none: all not returned")


class LineOut(BaseModel):
    line_id: str
    code: str
    name: str
    qty: int
    unit_price: int
    amount: int


class BasketOut(BaseModel):
    basket_id: str = Field(description="also the sale id it completes as")
    lane_id: str
    currency: str
    lines: list[LineOut]
    member: dict[str, Any] | None
    order_id: str | None = Field(description="the pickup order it collects")
    coupons: list[dict[str, str]] = Field(
        description="state: applies, not_applied, pending, at_completion (a single-use "
                    "code the cloud redeems when the sale completes)")
    subtotal: int
    discount: int
    total: int
    to_pay: int = Field(description="in money, after points and stored value")
    points_earned: int
    tender: dict[str, Any] | None


class SaleOut(BaseModel):
    sale_id: str
    lane_id: str
    offline: bool
    printed: bool = Field(description="printed on the lane's printer")
    total: int
    paid: int
    charged: int
    change: int
    points_earned: int
    points_used: int
    capped: list[str]
    coupons_used: list[str]
    refused_coupons: dict[str, str]
    receipt: dict[str, Any]
    replayed: bool = Field(description="true: this sale was completed by an earlier call")
    order_id: str | None = Field(description="the pickup order it collected")
    order_handed_over: bool = Field(description="the order is handed over (false: sold, "
                                                "but its status could not be moved on)")


class LaneOut(BaseModel):
    lane_id: str
    store_id: str
    printer: str | None
    currency: str


REFUSALS: dict[int | str, dict[str, Any]] = {
    code: {"model": Refusal} for code in (401, 404, 409, 413, 422, 503)}


_bearer = HTTPBearer(auto_error=False, description="the lane's token")


def _lanes(request: Request) -> LaneTills:
    lanes: LaneTills = request.app.state.lanes
    return lanes


async def lane_of(request: Request, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> LaneSettings:
    """The lane whose token the request carries (401 otherwise)."""
    lane = _lanes(request).lane_for_token(credentials.credentials if credentials else None)
    if lane is None:
        raise LaneError(401, "unauthorized", "a lane token is required")
    return lane


Lane = Annotated[LaneSettings, Depends(lane_of)]
PathId = Annotated[str, PathParam(pattern=ID_PATTERN)]


class BodyLimit:
    """Refuses a body over ``MAX_BODY`` by its Content-Length before anything reads it
    (FastAPI parses the body before the token is checked). Pure ASGI: a
    ``BaseHTTPMiddleware`` would cost every request a task and a stream."""

    def __init__(self, app: ASGIApp, *, lanes: LaneTills) -> None:
        self.app = app
        self.lanes = lanes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY:
                    self.lanes.refuse(413, "too_large", f"{int(value)} bytes")
                    response = JSONResponse({"reason": "too_large", "detail":
                                             f"bodies are at most {MAX_BODY} bytes"},
                                            status_code=413)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_app(lanes: LaneTills) -> FastAPI:
    app = FastAPI(title="storefleet lane till", version="1",
                  description="The store box's till for the lane terminals (decision "
                              "0063). Money is integer minor units.",
                  openapi_url="/till/openapi.json", docs_url="/till/docs", redoc_url=None,
                  responses=REFUSALS)
    app.state.lanes = lanes

    async def on_lane_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LaneError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"reason": exc.reason, "detail": exc.detail},
                            status_code=exc.status, headers=headers)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [{"where": ".".join(str(p) for p in e.get("loc", ())), "msg": e.get("msg")}
                  for e in exc.errors()]
        lanes.refuse(422, "invalid", str(errors)[:200])
        return JSONResponse({"reason": "invalid", "detail": errors}, status_code=422)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        reason = {404: "not_found", 405: "method_not_allowed",
                  413: "too_large"}.get(exc.status_code, "http")
        lanes.refuse(exc.status_code, reason, f"{request.method} {request.url.path}")
        return JSONResponse({"reason": reason, "detail": exc.detail},
                            status_code=exc.status_code)

    async def on_crash(request: Request, exc: Exception) -> Response:
        lanes.metrics.refused.labels(reason="internal").inc()
        logger.exception("lane request %s %s failed", request.method, request.url.path)
        return JSONResponse({"reason": "internal", "detail": type(exc).__name__},
                            status_code=500)

    app.add_exception_handler(LaneError, on_lane_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)

    @app.get("/till", include_in_schema=False)
    async def to_cashier_screen() -> Response:
        return RedirectResponse("/till/")

    @app.get("/till/", include_in_schema=False)
    async def cashier_screen() -> Response:
        return FileResponse(STATIC / "cashier.html", media_type="text/html; charset=utf-8")

    @app.get(f"{PREFIX}/lane", response_model=LaneOut, summary="The lane this token is")
    async def whoami(lane: Lane) -> Response:
        return JSONResponse({"lane_id": lane.id, "store_id": lanes.pos.service.store_id,
                             "printer": lane.printer,
                             "currency": lanes.pos.service.store.currency})

    @app.post(f"{PREFIX}/baskets", response_model=BasketOut, status_code=201,
              summary="Open a basket")
    async def open_basket(lane: Lane) -> Response:
        return JSONResponse(await lanes.open(lane), status_code=201)

    @app.get(f"{PREFIX}/baskets/{{basket_id}}", response_model=BasketOut,
             summary="The basket, priced")
    async def get_basket(lane: Lane, basket_id: PathId) -> Response:
        return JSONResponse(await lanes.view(lane, basket_id))

    @app.delete(f"{PREFIX}/baskets/{{basket_id}}", status_code=204, summary="Void a basket")
    async def void_basket(lane: Lane, basket_id: PathId) -> Response:
        await lanes.void(lane, basket_id)
        return Response(status_code=204)

    @app.post(f"{PREFIX}/baskets/{{basket_id}}/items", response_model=BasketOut,
              summary="Scan an item (the same code again adds to its line)")
    async def scan(lane: Lane, basket_id: PathId, body: ScanIn) -> Response:
        return JSONResponse(await lanes.scan(lane, basket_id, body.code, body.qty))

    @app.delete(f"{PREFIX}/baskets/{{basket_id}}/items/{{code}}", response_model=BasketOut,
                summary="Take units of an item off (all of them without qty)")
    async def unscan(lane: Lane, basket_id: PathId, code: PathId,
                     qty: Annotated[int | None, Query(ge=1, le=100_000)] = None) -> Response:
        return JSONResponse(await lanes.remove(lane, basket_id, code, qty))

    @app.put(f"{PREFIX}/baskets/{{basket_id}}/member", response_model=BasketOut,
             summary="Attach the member (by signed member code, member id or phone)")
    async def member(lane: Lane, basket_id: PathId, body: MemberRef) -> Response:
        return JSONResponse(await lanes.set_member(lane, basket_id, body))

    @app.delete(f"{PREFIX}/baskets/{{basket_id}}/member", response_model=BasketOut,
                summary="Take the member off")
    async def no_member(lane: Lane, basket_id: PathId) -> Response:
        return JSONResponse(await lanes.clear_member(lane, basket_id))

    @app.put(f"{PREFIX}/baskets/{{basket_id}}/order", response_model=BasketOut,
             summary="Collect a pickup order paid here: its lines join the basket, and it "
                     "is handed over when the sale completes")
    async def order(lane: Lane, basket_id: PathId, body: OrderIn) -> Response:
        return JSONResponse(await lanes.set_order(lane, basket_id, body.order_id))

    @app.delete(f"{PREFIX}/baskets/{{basket_id}}/order", response_model=BasketOut,
                summary="Take the order (and its lines) off")
    async def no_order(lane: Lane, basket_id: PathId) -> Response:
        return JSONResponse(await lanes.clear_order(lane, basket_id))

    @app.post(f"{PREFIX}/baskets/{{basket_id}}/coupons", response_model=BasketOut,
              summary="Present a coupon code")
    async def coupon(lane: Lane, basket_id: PathId, body: CouponIn) -> Response:
        return JSONResponse(await lanes.add_coupon(lane, basket_id, body.code))

    @app.delete(f"{PREFIX}/baskets/{{basket_id}}/coupons/{{code}}", response_model=BasketOut,
                summary="Take a coupon code off")
    async def no_coupon(lane: Lane, basket_id: PathId, code: PathId) -> Response:
        return JSONResponse(await lanes.remove_coupon(lane, basket_id, code))

    @app.put(f"{PREFIX}/baskets/{{basket_id}}/tender", response_model=BasketOut,
             summary="How the shopper pays: cash (with the cash given) or card, points, "
                     "stored value")
    async def tender(lane: Lane, basket_id: PathId, body: TenderIn) -> Response:
        return JSONResponse(await lanes.set_tender(lane, basket_id, body))

    @app.post(f"{PREFIX}/baskets/{{basket_id}}/complete", response_model=SaleOut,
              summary="Record the sale (ledger, then outbox) and print its receipt")
    async def complete(lane: Lane, basket_id: PathId,
                       body: CompleteIn | None = None) -> Response:
        cashier = body.cashier if body is not None else None
        return JSONResponse(await lanes.complete(lane, basket_id, cashier=cashier))

    @app.post(f"{PREFIX}/sales", response_model=SaleOut,
              summary="Ring up and record a whole sale in one request (lines, member, "
                      "coupons, tender); its sale_id makes a repeat return the same sale")
    async def sell(lane: Lane, body: SaleIn) -> Response:
        return JSONResponse(await lanes.sell(lane, body))

    @app.get(f"{PREFIX}/sales/{{sale_id}}", summary="A completed sale: lines, units returned")
    async def sale(lane: Lane, sale_id: PathId) -> Response:
        return JSONResponse(await lanes.sale(lane, sale_id))

    @app.post(f"{PREFIX}/sales/{{sale_id}}/refund",
              summary="Refund lines of a completed sale (all not yet returned: no lines)")
    async def refund(lane: Lane, sale_id: PathId, body: RefundIn | None = None) -> Response:
        lines = body.lines if body is not None else None
        return JSONResponse(await lanes.refund(lane, sale_id, lines))

    app.add_middleware(BodyLimit, lanes=lanes)
    app.mount("/till/static", StaticFiles(directory=STATIC), name="till-static")
    return app
