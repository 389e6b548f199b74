"""Devices across the fleet, in (store_id, device_id) pages (the primary key; decision 0052)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import Select, select, tuple_

from cloud.api.deps import PrincipalDep, ReadRole, SessionDep, scoped_store_filter
from cloud.api.json_body import JsonRoute
from cloud.api.paging import (
    DEFAULT_LIMIT,
    NEXT_HEADERS,
    Cursor,
    Limit,
    cut,
    decode_cursor,
    set_next,
)
from cloud.api.schemas import DevicePublic
from cloud.db.models import Device
from protocols.ids import Id

router = APIRouter(prefix="/devices", tags=["devices"], route_class=JsonRoute)

LISTING = "devices"


def device_page(stmt: Select[Device], *, cursor: str | None, limit: int
                ) -> Select[Device]:
    """``stmt`` in primary-key order, from after ``cursor``, one row past ``limit``."""
    stmt = stmt.order_by(Device.store_id, Device.device_id).limit(limit + 1)
    if cursor is not None:
        store_id, device_id = decode_cursor(cursor, LISTING, (str, str))
        stmt = stmt.where(tuple_(Device.store_id, Device.device_id) > (store_id, device_id))
    return stmt


def device_key(d: Device) -> tuple[str, str]:
    return d.store_id, d.device_id


@router.get("", summary="List devices, optionally of one store, kind, id or online status",
            responses={200: {"headers": NEXT_HEADERS}})
def list_devices(
    request: Request,
    response: Response,
    session: SessionDep,
    _: ReadRole,
    who: PrincipalDep,
    store_id: Annotated[Id | None, Query()] = None,
    online: bool | None = None,
    kind: Annotated[Id | None, Query()] = None,
    device_id: Annotated[Id | None, Query(description="this device id in any store")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> list[DevicePublic]:
    stmt = device_page(select(Device), cursor=cursor, limit=limit)
    if (stores := scoped_store_filter(session, who, store_id)) is not None:
        stmt = stmt.where(Device.store_id.in_(sorted(stores)))
    if online is not None:
        stmt = stmt.where(Device.online == online)
    if kind is not None:
        stmt = stmt.where(Device.kind == kind)
    if device_id is not None:
        stmt = stmt.where(Device.device_id == device_id)
    rows, nxt = cut(list(session.scalars(stmt)), limit, LISTING, device_key)
    set_next(request, response, nxt)
    return [DevicePublic.model_validate(d) for d in rows]
