"""Request bodies parsed as strict JSON text: ``router = APIRouter(route_class=JsonRoute)``.

Python's ``json.loads`` (what Starlette's ``Request.json`` uses) accepts an escaped lone
surrogate (``"\\ud800"``): a ``str`` with no UTF-8 form, which no database column,
log line or response can hold. It passed every ``dict[str, Any]`` and plain ``str``
field and ended as a 500 when PostgreSQL refused it (issue 12). ``JsonRoute`` parses
with pydantic-core's JSON parser instead, which refuses it (and bytes that are not
UTF-8); its error is raised as the ``JSONDecodeError`` FastAPI turns into the same 422
``json_invalid`` problem as any other malformed body.

FastAPI keeps each route's own class when a router is included in another, so every
routes module passes ``route_class=JsonRoute``; a test checks that all of them do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import Request, Response
from fastapi.routing import APIRoute


class JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = pydantic_core.from_json(body)
            except ValueError as err:
                raise json.JSONDecodeError(str(err), body.decode(errors="replace"), 0) from err
        return self._json


class JsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_json(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return strict_json
