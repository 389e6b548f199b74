"""Stores and their devices: the cloud's view rebuilt from births, deaths and telemetry.

Both lists come in keyset pages (``cloud.api.paging``, decision 0052): stores by
``store_id``, a store's devices by ``device_id`` (the primary keys).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import Integer, Select, func, select
from sqlalchemy.orm import Session, defer

from cloud.api.deps import PrincipalDep, ReadRole, SessionDep
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
from cloud.api.problems import ApiProblem
from cloud.api.routes.devices import LISTING as DEVICE_LISTING
from cloud.api.routes.devices import device_key, device_page
from cloud.api.schemas import DevicePublic, StoreDetailPublic, StorePublic
from cloud.db.models import Device, Store
from cloud.db.models_loyalty import StoreRegion
from protocols.ids import Id

router = APIRouter(prefix="/stores", tags=["stores"], route_class=JsonRoute)

StoreId = Annotated[Id, Path(description="store id")]


LISTING = "stores"


def _device_counts() -> Select[str, int, Any]:
    return select(
        Device.store_id,
        func.count().label("total"),
        func.sum(func.cast(Device.online, Integer)).label("online"),
    ).group_by(Device.store_id)


def _with_counts() -> Select[Any]:
    counts = _device_counts().subquery()
    return select(Store, counts.c.total, counts.c.online).outerjoin(
        counts, counts.c.store_id == Store.store_id
    )


def _public(cls: type[StorePublic], store: Store, total: int | None, online: int | None) -> Any:
    return cls.model_validate(store).model_copy(
        update={"devices_total": total or 0, "devices_online": online or 0}
    )


@router.get("", summary="List stores with online status and device counts",
            responses={200: {"headers": NEXT_HEADERS}})
def list_stores(
    request: Request,
    response: Response,
    session: SessionDep,
    _: ReadRole,
    who: PrincipalDep,
    region: Annotated[Id | None, Query(description="stores HQ put in this region")] = None,
    online: bool | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> list[StorePublic]:
    # Not the birth (a store's whole device list as its agent sent it, ~2.5 KB at 20
    # devices): the list does not show it, and decoding it was half of a page's CPU
    # (decision 0060).
    stmt = select(Store).options(defer(Store.birth)).order_by(Store.store_id).limit(limit + 1)
    if cursor is not None:
        (after,) = decode_cursor(cursor, LISTING, (str,))
        stmt = stmt.where(Store.store_id > after)
    if region is not None:
        stmt = stmt.where(Store.store_id.in_(
            select(StoreRegion.store_id).where(StoreRegion.region == region)))
    if online is not None:
        stmt = stmt.where(Store.online == online)
    if (allowed := who.allowed_stores(session)) is not None:
        stmt = stmt.where(Store.store_id.in_(sorted(allowed)))  # a scoped token: its own
    stores, nxt = cut(list(session.scalars(stmt)), limit, LISTING, lambda s: (s.store_id,))
    set_next(request, response, nxt)
    # Device counts of this page's stores only, where a join to counts of every store
    # would group the whole chain per page. The page's first..last bounds the scan of
    # the devices' primary key: with the IN list alone PostgreSQL read every device (a
    # sequential scan, 12 ms a page at 100,000 devices; 3 ms with it; decision 0060).
    ids = [s.store_id for s in stores]
    counts = {row.store_id: (row.total, row.online) for row in session.execute(
        _device_counts().where(Device.store_id.between(ids[0], ids[-1]),
                               Device.store_id.in_(ids)))} if ids else {}
    return [_public(StorePublic, s, *counts.get(s.store_id, (0, 0))) for s in stores]


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
    responses={200: {"headers": NEXT_HEADERS}, 404: {"description": "unknown store"}},
)
def list_store_devices(store_id: StoreId, request: Request, response: Response,
                       session: SessionDep, _: ReadRole, limit: Limit = DEFAULT_LIMIT,
                       cursor: Cursor = None) -> list[DevicePublic]:
    # The same pages and cursors as /devices?store_id= (the path's store is in scope:
    # enforce_path_scope checked it). A bad cursor is refused before the store is looked up.
    stmt = device_page(select(Device).where(Device.store_id == store_id),
                       cursor=cursor, limit=limit)
    load_store(session, store_id)
    rows, nxt = cut(list(session.scalars(stmt)), limit, DEVICE_LISTING, device_key)
    set_next(request, response, nxt)
    return [DevicePublic.model_validate(d) for d in rows]
