"""Business events, paged with an opaque cursor.

Order is (received_ms, store_id, id): the order the cloud stored them, ties broken by
the event's key (an event id is unique within its store only, decision 0026). Rows are
never updated, so a cursor stays valid forever; the cursor is the position of the last
item returned, and the next page starts after it. (Cursors written before revision 0008
held no store and are refused as ``bad_cursor``: start again from the first page.)
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import and_, or_, select

from cloud.api.deps import PrincipalDep, ReadRole, SessionDep, scoped_store_filter
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.schemas import BIGINT_MAX, EventPage, EventPublic
from cloud.db.models import Event
from protocols.ids import Id

router = APIRouter(prefix="/events", tags=["events"], route_class=JsonRoute)


def encode_cursor(received_ms: int, store_id: str, event_id: str) -> str:
    raw = f"{received_ms}:{store_id}/{event_id}"  # '/' is in no id
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ms, key = raw.split(":", 1)
        store_id, event_id = key.split("/", 1)
        received_ms = int(ms)
    except (binascii.Error, UnicodeDecodeError, ValueError) as err:
        raise ApiProblem(422, "after: not a cursor returned by this API",
                         reason="bad_cursor") from err
    # Both halves go into a query: a number past BIGINT or an id with a NUL is no cursor
    # this API wrote, and PostgreSQL would answer it with an error (a 500).
    if not 0 <= received_ms <= BIGINT_MAX or "\x00" in key:
        raise ApiProblem(422, "after: not a cursor returned by this API", reason="bad_cursor")
    return received_ms, store_id, event_id


@router.get("", summary="List events, oldest first, with cursor pagination")
def list_events(
    session: SessionDep,
    _: ReadRole,
    who: PrincipalDep,
    store_id: Annotated[Id | None, Query()] = None,
    kind: Annotated[Id | None, Query()] = None,
    after: Annotated[str | None, Query(description="`next` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    stmt = select(Event).order_by(Event.received_ms, Event.store_id, Event.id).limit(limit + 1)
    if (stores := scoped_store_filter(session, who, store_id)) is not None:
        stmt = stmt.where(Event.store_id.in_(sorted(stores)))
    if kind is not None:
        stmt = stmt.where(Event.kind == kind)
    if after is not None:
        ms, last_store, last_id = decode_cursor(after)
        stmt = stmt.where(or_(
            Event.received_ms > ms,
            and_(Event.received_ms == ms, or_(
                Event.store_id > last_store,
                and_(Event.store_id == last_store, Event.id > last_id))),
        ))
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    nxt = encode_cursor(last.received_ms, last.store_id, last.id) if more and last else None
    return EventPage(items=[EventPublic.model_validate(r) for r in rows], next=nxt)
