"""Every error as RFC 9457 problem details (``application/problem+json``).

Routes raise ``ApiProblem``; the types a store box acts on (``nothing_published``: HQ
has not published that content for the store yet) are declared in ``protocols.problems``
and built with helpers here. FastAPI's own errors (404 for unknown routes, 405, 422
validation) and unexpected exceptions are converted by the handlers installed with
``install_problem_handlers``. Each rejection is counted in
``storefleet_api_rejected_total{reason}``.

The OpenAPI document says the same (``declare_problems``): every 4xx/5xx response a route
declares is ``application/problem+json`` with the ``Problem`` schema, FastAPI's own
``HTTPValidationError`` is gone, and a route with a body declares the 400 FastAPI
answers when it cannot read one. Routes declare the statuses they answer (404, 409,
503 ...) in their ``responses=`` with a description only; the router adds 401/403
(``cloud.main``).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.api.schemas import Problem
from cloud.metrics import ApiMetrics
from protocols.errors import StorefleetError
from protocols.problems import NOTHING_PUBLISHED, TYPE_BASE

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# FastAPI's default 422 body, which install_problem_handlers replaces.
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
NOTHING_PUBLISHED_REASON = NOTHING_PUBLISHED.removeprefix(TYPE_BASE)

_REASON_BY_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid",
    503: "unavailable",
}


class ApiProblem(StorefleetError):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.reason = reason or _REASON_BY_STATUS.get(status, "error")
        self.headers = headers
        self.title = title


def nothing_published(what: str, store_id: str) -> ApiProblem:
    """404 for content HQ has not published for ``store_id`` yet (a normal state)."""
    return ApiProblem(404, f"no {what} published for store {store_id!r} yet; the store "
                      "keeps polling", reason=NOTHING_PUBLISHED_REASON,
                      title="Nothing published yet")


def problem_response(
    request: Request,
    status: int,
    detail: str | None,
    *,
    reason: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    title: str | None = None,
) -> JSONResponse:
    metrics: ApiMetrics | None = getattr(request.app.state, "api_metrics", None)
    if metrics is not None:
        metrics.rejected.labels(reason=reason).inc()
    body: dict[str, Any] = {
        "type": TYPE_BASE + reason,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def declare_problems(spec: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a generated OpenAPI document (in place) to declare problem+json errors."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema()
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                # FastAPI answers 400 when reading the body fails (malformed JSON is a 422)
                responses.setdefault("400", {"description": "the body could not be read"})
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = {PROBLEM_JSON: {"schema": dict(_PROBLEM_REF)}}
    return spec


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(request, exc.status, exc.detail, reason=exc.reason,
                                headers=exc.headers, title=exc.title)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = _REASON_BY_STATUS.get(exc.status_code, "error")
        return problem_response(request, exc.status_code, str(exc.detail), reason=reason,
                                headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return problem_response(
            request, 422, f"{where}: {first['msg']}", reason="invalid",
            extra={"errors": jsonable_encoder(errors)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, "internal error; see the server log",
                                reason="internal")

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
