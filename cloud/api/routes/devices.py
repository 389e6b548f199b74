"""Devices across the fleet."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from cloud.api.deps import PrincipalDep, ReadRole, SessionDep, scoped_store_filter
from cloud.api.json_body import JsonRoute
from cloud.api.schemas import DevicePublic
from cloud.db.models import Device
from protocols.ids import Id

router = APIRouter(prefix="/devices", tags=["devices"], route_class=JsonRoute)


@router.get("", summary="List devices, optionally of one store, kind, id or online status")
def list_devices(
    session: SessionDep,
    _: ReadRole,
    who: PrincipalDep,
    store_id: Annotated[Id | None, Query()] = None,
    online: bool | None = None,
    kind: Annotated[Id | None, Query()] = None,
    device_id: Annotated[Id | None, Query(description="this device id in any store")] = None,
    # A page bound, so one call can never pull a whole chain's devices into memory.
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[DevicePublic]:
    stmt = select(Device).order_by(Device.store_id, Device.device_id).limit(limit)
    if (stores := scoped_store_filter(session, who, store_id)) is not None:
        stmt = stmt.where(Device.store_id.in_(sorted(stores)))
    if online is not None:
        stmt = stmt.where(Device.online == online)
    if kind is not None:
        stmt = stmt.where(Device.kind == kind)
    if device_id is not None:
        stmt = stmt.where(Device.device_id == device_id)
    return [DevicePublic.model_validate(d) for d in session.scalars(stmt)]
