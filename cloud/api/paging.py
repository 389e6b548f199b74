"""Keyset (cursor) pages for the list routes: stores, devices, events, members (decision 0052).

Every list route takes ``?limit=`` (default ``DEFAULT_LIMIT``, at most ``MAX_LIMIT``) and
``?cursor=``, orders by a unique key that has an index (a primary key, or
``ix_events_received``), and answers with the rows after the cursor. When there may be
more, the answer carries the next page's cursor in two headers::

    X-Next-Cursor: WyJkZXZpY2VzIiwiczEiLCJkOSJd
    Link: </api/v1/devices?kind=cart&cursor=WyJkZXZpY2VzIiwiczEiLCJkOSJd>; rel="next"

and neither on the last page. The body stays what it was (a plain JSON list; events keep
their ``{items, next}`` page), so the clients that read the first page only, the demo,
the benches and the tests, are unchanged.

A cursor is the base64url (no padding) of the JSON list ``[listing, *sort key of the last
row returned]``: opaque to clients, readable in a log. It is not signed, because it grants
nothing: the token's store scope and the query's filters are applied to every page, so
an edited cursor can only move where a page starts. What ``decode_cursor`` refuses with a
422 ``bad_cursor`` problem (counted in ``storefleet_api_rejected_total{reason}`` like any
other): text that is not base64url JSON, a cursor of another listing, a key of the wrong
shape, an id outside ``protocols.ids`` or a number outside BIGINT (either would reach the
database, and PostgreSQL answers those with an error).

Keyset, not offset: a page costs one index range scan however deep it is, and rows
inserted while a client walks never shift the rows it has not seen yet, so every row
present when the walk started is returned exactly once.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Query, Request, Response

from cloud.api.problems import ApiProblem
from cloud.api.schemas import BIGINT_MAX
from protocols.ids import valid_id

# 500 rows of the widest listing (a device with its health) is ~0.5 MB of JSON: one page
# is a fraction of a second to build and send; 5,000 (the old /devices cap) is the most a
# client may ask for in one call, so a 200,000-device chain is 40 calls at the largest.
DEFAULT_LIMIT = 500
MAX_LIMIT = 5000
# The longest cursor this API writes: an event's is ~["events",<20 digits>,<id>,<id>],
# ~170 characters in base64; anything much longer is not one of ours.
CURSOR_MAX = 512
NEXT_HEADER = "X-Next-Cursor"

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT,
                             description=f"rows per page (at most {MAX_LIMIT})")]
Cursor = Annotated[str | None, Query(
    max_length=CURSOR_MAX,
    description=f"where to continue: the `{NEXT_HEADER}` of the previous page")]

NEXT_HEADERS: dict[str, Any] = {
    NEXT_HEADER: {"description": "cursor of the next page; absent on the last page",
                  "schema": {"type": "string"}},
    "Link": {"description": 'the next page\'s URL, `<...>; rel="next"`; absent on the '
                            "last page", "schema": {"type": "string"}},
}
"""For a list route's ``responses={200: {"headers": NEXT_HEADERS}}``."""

KeyPart = str | int
T = TypeVar("T")


def encode_cursor(listing: str, key: tuple[KeyPart, ...]) -> str:
    raw = json.dumps([listing, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def bad_cursor(why: str) -> ApiProblem:
    return ApiProblem(422, f"cursor: {why}; pass the {NEXT_HEADER} of the previous page "
                      "unchanged, or leave it out to start from the first page",
                      reason="bad_cursor")


def decode_base64url(cursor: str) -> bytes:
    """The bytes of unpadded base64url text; ``bad_cursor`` for anything else."""
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_",
                                validate=True)
    except ValueError as err:  # binascii.Error is a ValueError
        raise bad_cursor("not base64url text") from err


def decode_cursor(cursor: str, listing: str, shape: tuple[type[KeyPart], ...]
                  ) -> tuple[KeyPart, ...]:
    """The sort key in ``cursor``, checked against ``listing`` and ``shape`` (one type per
    key column: ``str`` parts must be ids, ``int`` parts BIGINTs >= 0)."""
    try:
        value = json.loads(decode_base64url(cursor))
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise bad_cursor("not a cursor written by this API") from err
    if not isinstance(value, list) or not value or not isinstance(value[0], str):
        raise bad_cursor("not a cursor written by this API")
    if value[0] != listing:
        raise bad_cursor(f"a cursor of another listing ({value[0][:32]!r}), not of {listing}")
    key = value[1:]
    if len(key) != len(shape):
        raise bad_cursor(f"a {listing} cursor holds {len(shape)} key part(s), not {len(key)}")
    for part, kind in zip(key, shape, strict=True):
        if kind is str and not valid_id(part):
            raise bad_cursor("a key part is not an id")
        # bool is an int in Python; JSON true is no position
        if kind is int and (type(part) is not int or not 0 <= part <= BIGINT_MAX):
            raise bad_cursor("a key part is not a number between 0 and 2^63-1")
    return tuple(key)


def cut(rows: Sequence[T], limit: int, listing: str,
        key: Callable[[T], tuple[KeyPart, ...]]) -> tuple[Sequence[T], str | None]:
    """The page of ``rows`` (a query's ``limit + 1`` rows: one more says there is a next
    page) and the cursor after its last row, or None when this is the last page."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], encode_cursor(listing, key(rows[limit - 1]))


def set_next(request: Request, response: Response, cursor: str | None) -> None:
    """Put the next page's cursor on ``response`` (nothing at the end): ``X-Next-Cursor``
    and a ``Link`` to the same query with ``cursor`` replaced (RFC 8288; a relative
    reference, resolved against the request's own URL, so a proxy in front of the API
    does not have to rewrite it)."""
    if cursor is None:
        return
    query = [(k, v) for k, v in request.query_params.multi_items()
             if k not in ("cursor", "after")]  # ``after``: events' older name for cursor
    query.append(("cursor", cursor))
    response.headers[NEXT_HEADER] = cursor
    response.headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
