"""Stores and their devices: the cloud's view rebuilt from births, deaths and telemetry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import Integer, Select, func, select
from sqlalchemy.orm import Session

from cloud.api.deps import PrincipalDep, ReadRole, SessionDep
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.schemas import DevicePublic, StoreDetailPublic, StorePublic
from cloud.db.models import Device, Store
from cloud.db.models_loyalty import StoreRegion
from protocols.ids import Id

router = APIRouter(prefix="/stores", tags=["stores"], route_class=JsonRoute)

StoreId = Annotated[Id, Path(description="store id")]


def _with_counts() -> Select[Any]:
    counts = (
        select(
            Device.store_id,
            func.count().label("total"),
            func.sum(func.cast(Device.online, Integer)).label("online"),
        )
        .group_by(Device.store_id)
        .subquery()
    )
    return select(Store, counts.c.total, counts.c.online).outerjoin(
        counts, counts.c.store_id == Store.store_id
    )


def _public(cls: type[StorePublic], store: Store, total: int | None, online: int | None) -> Any:
    return cls.model_validate(store).model_copy(
        update={"devices_total": total or 0, "devices_online": online or 0}
    )


@router.get("", summary="List stores with online status and device counts")
def list_stores(
    session: SessionDep,
    _: ReadRole,
    who: PrincipalDep,
    region: Annotated[Id | None, Query(description="stores HQ put in this region")] = None,
    online: bool | None = None,
) -> list[StorePublic]:
    stmt = _with_counts().order_by(Store.store_id)
    if region is not None:
        stmt = stmt.where(Store.store_id.in_(
            select(StoreRegion.store_id).where(StoreRegion.region == region)))
    if online is not None:
        stmt = stmt.where(Store.online == online)
    if (allowed := who.allowed_stores(session)) is not None:
        stmt = stmt.where(Store.store_id.in_(sorted(allowed)))  # a scoped token: its own
    rows = session.execute(stmt).all()
    return [_public(StorePublic, s, total, online) for s, total, online in rows]


def load_store(session: Session, store_id: str) -> Store:
    store = session.get(Store, store_id)
    if store is None:
        raise ApiProblem(404, f"no store {store_id!r}")
    return store


@router.get(
    "/{store_id}",
    summary="One store, with its last birth",
    responses={404: {"description": "unknown store"}},
)
def get_store(store_id: StoreId, session: SessionDep, _: ReadRole) -> StoreDetailPublic:
    row = session.execute(_with_counts().where(Store.store_id == store_id)).first()
    if row is None:
        raise ApiProblem(404, f"no store {store_id!r}")
    store, total, online = row
    result: StoreDetailPublic = _public(StoreDetailPublic, store, total, online)
    return result


@router.get(
    "/{store_id}/devices",
    summary="Devices of one store",
    responses={404: {"description": "unknown store"}},
)
def list_store_devices(store_id: StoreId, session: SessionDep, _: ReadRole) -> list[DevicePublic]:
    load_store(session, store_id)
    devices = session.scalars(
        select(Device).where(Device.store_id == store_id).order_by(Device.device_id)
    )
    return [DevicePublic.model_validate(d) for d in devices]
