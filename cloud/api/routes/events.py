"""Business events, paged with an opaque cursor.

Order is (received_ms, id): the order the cloud stored them, ties broken by the
event id. Rows are never updated, so a cursor stays valid forever; the cursor is
the position of the last item returned, and the next page starts after it.
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
from cloud.api.schemas import BIGINT_MAX, ID_PATTERN, EventPage, EventPublic
from cloud.db.models import Event

router = APIRouter(prefix="/events", tags=["events"], route_class=JsonRoute)


def encode_cursor(received_ms: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{received_ms}:{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ms, event_id = raw.split(":", 1)
        received_ms = int(ms)
    except (binascii.Error, UnicodeDecodeError, ValueError) as err:
        raise ApiProblem(422, "after: not a cursor returned by this API",
                         reason="bad_cursor") from err
    # Both halves go into a query: a number past BIGINT or an id with a NUL is no cursor
    # this API wrote, and PostgreSQL would answer it with an error (a 500).
    if not 0 <= received_ms <= BIGINT_MAX or "\x00" in event_id:
        raise ApiProblem(422, "after: not a cursor returned by this API", reason="bad_cursor")
    return received_ms, event_id


@router.get("", summary="List events, oldest first, with cursor pagination")
def list_events(
    session: SessionDep,
    _: ReadRole,
    who: PrincipalDep,
    store_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    kind: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    after: Annotated[str | None, Query(description="`next` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    stmt = select(Event).order_by(Event.received_ms, Event.id).limit(limit + 1)
    if (stores := scoped_store_filter(session, who, store_id)) is not None:
        stmt = stmt.where(Event.store_id.in_(sorted(stores)))
    if kind is not None:
        stmt = stmt.where(Event.kind == kind)
    if after is not None:
        ms, last_id = decode_cursor(after)
        stmt = stmt.where(
            or_(Event.received_ms > ms, and_(Event.received_ms == ms, Event.id > last_id))
        )
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1].received_ms, rows[-1].id) if more and rows else None
    return EventPage(items=[EventPublic.model_validate(r) for r in rows], next=nxt)
