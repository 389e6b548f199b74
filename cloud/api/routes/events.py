"""Business events, in keyset pages (``cloud.api.paging``, decision 0052).

Order is (received_ms, store_id, id): the order the cloud stored them, ties broken by
the event's key (an event id is unique within its store only, decision 0026), which
``ix_events_received`` indexes. Rows are never updated, so a cursor stays valid forever;
the cursor is the position of the last item returned, and the next page starts after it.

The page keeps its ``{items, next}`` body (``next`` is the same cursor as the
``X-Next-Cursor`` header the other listings carry), and ``after`` is kept as the older
name of ``cursor``. Cursors written before decision 0052 (the base64url of
``received_ms:store_id/id``) are still read, so a consumer that saved one carries on.
(Cursors written before revision 0008 held no store and are refused as ``bad_cursor``.)
"""

from __future__ import annotations

import binascii
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select, tuple_

from cloud.api.deps import PrincipalDep, ReadRole, SessionDep, scoped_store_filter
from cloud.api.json_body import JsonRoute
from cloud.api.paging import (
    CURSOR_MAX,
    DEFAULT_LIMIT,
    NEXT_HEADERS,
    Cursor,
    Limit,
    bad_cursor,
    cut,
    decode_base64url,
    decode_cursor,
    set_next,
)
from cloud.api.problems import ApiProblem
from cloud.api.schemas import BIGINT_MAX, EventPage, EventPublic
from cloud.db.models import Event
from protocols.ids import Id, valid_id

router = APIRouter(prefix="/events", tags=["events"], route_class=JsonRoute)

LISTING = "events"


def _decode_legacy(cursor: str) -> tuple[int, str, str]:
    """A cursor of the form this route wrote before decision 0052."""
    try:
        raw = decode_base64url(cursor).decode()
        ms, key = raw.split(":", 1)
        store_id, event_id = key.split("/", 1)
        received_ms = int(ms)
    except (binascii.Error, UnicodeDecodeError, ValueError) as err:
        raise bad_cursor("not a cursor written by this API") from err
    # Every part goes into a query: a number past BIGINT or a part that is not an id (a
    # NUL, say) is no cursor this API wrote, and PostgreSQL would answer it with a 500.
    if not (0 <= received_ms <= BIGINT_MAX and valid_id(store_id) and valid_id(event_id)):
        raise bad_cursor("not a cursor written by this API")
    return received_ms, store_id, event_id


def decode_event_cursor(cursor: str) -> tuple[int, str, str]:
    if cursor.startswith("WyJ"):  # base64 of '["': this module's cursors since 0052
        ms, store_id, event_id = decode_cursor(cursor, LISTING, (int, str, str))
        return int(ms), str(store_id), str(event_id)
    return _decode_legacy(cursor)


def event_key(e: Event) -> tuple[int, str, str]:
    return e.received_ms, e.store_id, e.id


@router.get("", summary="List events, oldest first, with cursor pagination",
            responses={200: {"headers": NEXT_HEADERS}})
def list_events(
    request: Request,
    response: Response,
    session: SessionDep,
    _: ReadRole,
    who: PrincipalDep,
    store_id: Annotated[Id | None, Query()] = None,
    kind: Annotated[Id | None, Query()] = None,
    cursor: Cursor = None,
    after: Annotated[str | None, Query(
        max_length=CURSOR_MAX, deprecated=True,
        description="the older name of `cursor` (`next` of the previous page)")] = None,
    limit: Limit = DEFAULT_LIMIT,
) -> EventPage:
    if cursor is not None and after is not None:
        raise ApiProblem(422, "cursor and after are the same parameter: give one")
    stmt = select(Event).order_by(Event.received_ms, Event.store_id, Event.id).limit(limit + 1)
    if (stores := scoped_store_filter(session, who, store_id)) is not None:
        stmt = stmt.where(Event.store_id.in_(sorted(stores)))
    if kind is not None:
        stmt = stmt.where(Event.kind == kind)
    if (position := cursor or after) is not None:
        stmt = stmt.where(tuple_(Event.received_ms, Event.store_id, Event.id)
                          > decode_event_cursor(position))
    rows, nxt = cut(list(session.scalars(stmt)), limit, LISTING, event_key)
    set_next(request, response, nxt)
    return EventPage(items=[EventPublic.model_validate(r) for r in rows], next=nxt)
