"""A small typed client for the cloud REST API (used by the CLI and by tests).

The listings (stores, devices) come a page at a time: ``pages`` follows the API's
``X-Next-Cursor`` until the last page or ``limit`` rows (decision 0052), so a chain's
200,000 devices are many bounded requests, never one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from protocols.errors import StorefleetError


class FleetError(StorefleetError):
    """An API call failed; ``status`` and the problem+json ``detail`` say why.

    ``status`` is 0 when no HTTP answer came back (refused, timed out, not a URL); the
    message then leaves the status out and names the API instead. ``problem`` is the
    problem's type without its base (``reason_required``), when the API gave one.
    """

    reason = "api_call_failed"

    def __init__(self, status: int, title: str, detail: str | None = None, *,
                 problem: str | None = None) -> None:
        head = f"{status} {title}" if status else title
        super().__init__(head + (f": {detail}" if detail else ""))
        self.status = status
        self.title = title
        self.detail = detail
        self.problem = problem


PAGE_SIZE = 500  # the API's default page (cloud.api.paging.DEFAULT_LIMIT)
NEXT_CURSOR = "X-Next-Cursor"


class FleetClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._base_url = base_url.rstrip("/")
        try:
            self._http = httpx.Client(
                base_url=self._base_url, headers=headers, timeout=timeout, transport=transport
            )
        except httpx.InvalidURL as err:
            raise FleetError(0, f"the cloud API address {base_url!r} is not a URL",
                             str(err)) from err

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; an unreachable API or an error answer becomes a ``FleetError``."""
        try:
            resp = self._http.request(method, path, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            # str() of some httpx errors is empty (a bare timeout): name the class then
            raise FleetError(0, f"cannot reach the cloud API at {self._base_url}",
                             str(err) or type(err).__name__) from err
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            if not isinstance(body, dict):
                body = {}
            kind = body.get("type")
            raise FleetError(
                resp.status_code, body.get("title", resp.reason_phrase), body.get("detail"),
                problem=kind.rpartition("/")[2] if isinstance(kind, str) else None,
            )
        return resp

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; its JSON answer (None when empty)."""
        return self._json(self.raw(method, path, **kwargs), path)

    def _json(self, resp: httpx.Response, path: str) -> Any:
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as err:  # a web server, but not the storefleet API
            raise FleetError(resp.status_code, f"{self._base_url}{path} did not answer JSON",
                             resp.headers.get("content-type")) from err

    def pages(self, path: str, params: dict[str, Any] | None = None, *,
              limit: int | None = None, page_size: int = PAGE_SIZE
              ) -> Iterator[list[dict[str, Any]]]:
        """Each page of a listing, following its cursor to the end, or until ``limit``
        rows (None: all of them)."""
        left = limit
        cursor: str | None = None
        while left is None or left > 0:
            query = {**(params or {}), "limit": page_size if left is None
                     else min(page_size, left)}
            if cursor is not None:
                query["cursor"] = cursor
            resp = self.raw("GET", path, params=query)
            page = self._json(resp, path)
            if not isinstance(page, list):
                raise FleetError(resp.status_code, f"{self._base_url}{path} did not answer "
                                 "a list", type(page).__name__)
            yield page
            if left is not None:
                left -= len(page)
            if (cursor := resp.headers.get(NEXT_CURSOR)) is None:
                return

    def listing(self, path: str, params: dict[str, Any] | None = None, *,
                limit: int | None = None) -> list[dict[str, Any]]:
        """Every row of a listing (or the first ``limit``), fetched a page at a time."""
        return [row for page in self.pages(path, params, limit=limit) for row in page]

    def stores(self, *, region: str | None = None, online: bool | None = None,
               limit: int | None = None) -> list[dict[str, Any]]:
        params = _present(region=region, online=online)
        return self.listing("/api/v1/stores", params, limit=limit)

    def store(self, store_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/stores/{store_id}"))

    def devices(
        self,
        store_id: str | None = None,
        *,
        kind: str | None = None,
        online: bool | None = None,
        device_id: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        params = _present(store_id=store_id, kind=kind, online=online, device_id=device_id)
        return self.listing("/api/v1/devices", params, limit=limit)

    def events(
        self,
        *,
        store_id: str | None = None,
        kind: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        """One page of events (``{items, next}``); pass ``next`` back as ``after``."""
        params: dict[str, Any] = {"limit": limit}
        for key, value in (("store_id", store_id), ("kind", kind), ("cursor", after)):
            if value is not None:
                params[key] = value
        return dict(self.request("GET", "/api/v1/events", params=params))

    def send_command(
        self,
        store_id: str,
        name: str,
        *,
        args: dict[str, Any] | None = None,
        target: str = "agent",
        ttl_s: int = 60,
        reason: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "args": args or {}, "target": target,
                                "ttl_s": ttl_s}
        if reason is not None:
            body["reason"] = reason
        return dict(self.request("POST", f"/api/v1/stores/{store_id}/commands", json=body))

    def command(self, cmd_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/commands/{cmd_id}"))

    def send_fleet_command(self, name: str, selection: dict[str, Any], *,
                           args: dict[str, Any] | None = None, target: str = "agent",
                           ttl_s: int = 300, reason: str | None = None,
                           idempotency_key: str | None = None) -> dict[str, Any]:
        """One command to every store of ``selection`` (``{"all": True}`` or stores,
        regions, groups), decision 0061; the fan-out with its counts."""
        body: dict[str, Any] = {**selection, "name": name, "args": args or {},
                                "target": target, "ttl_s": ttl_s}
        if reason is not None:
            body["reason"] = reason
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return dict(self.request("POST", "/api/v1/fleet/commands", json=body,
                                 headers=headers))

    def fleet_command(self, fanout_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/fleet/commands/{fanout_id}"))

    def fleet_command_failures(self, fanout_id: str, *, limit: int | None = None
                               ) -> list[dict[str, Any]]:
        return self.listing(f"/api/v1/fleet/commands/{fanout_id}/failures", limit=limit)

    def shadow(self, store_id: str, target: str = "agent") -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/stores/{store_id}/shadow/{target}"))

    def set_desired(
        self, store_id: str, state: dict[str, Any], *, target: str = "agent"
    ) -> dict[str, Any]:
        return dict(
            self.request(
                "PUT", f"/api/v1/stores/{store_id}/shadow/{target}/desired", json={"state": state}
            )
        )


def _present(**params: Any) -> dict[str, Any]:
    """Query parameters that were given; booleans as the API spells them."""
    return {k: (str(v).lower() if isinstance(v, bool) else v)
            for k, v in params.items() if v is not None}
