"""What rollouts select stores by and when they may reach them (decision 0043).

Store groups (hq-admin): ``PUT``/``DELETE /groups/{group}/stores/{store_id}``, ``GET
/groups``; a store may be in several groups, and a rollout's ``groups`` reach them all.
Regions are HQ's ``store_regions`` (``PUT /regions/{region}/stores/{store_id}``).
``StoreSelection`` is the request body part that names stores, regions and groups.

Maintenance windows: ``PUT /stores/{store_id}/maintenance {timezone, window}`` (hq-admin,
or a store manager for its own store: the path scope checks a scoped token),
``GET`` (every reader; a store without a window says it is offered at once), ``DELETE``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cloud.api.deps import ADMINS, AdminRole, ReadRole, SessionDep, StateDep, require_role
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.db.models import Store
from cloud.db.models_rollouts import StoreGroup, StoreMaintenance
from cloud.rollouts.windows import Window, WindowError
from cloud.settings import Role
from protocols.ids import Id

router = APIRouter(tags=["rollouts"], route_class=JsonRoute)

StoreId = Annotated[Id, Path(description="store id")]
GroupId = Annotated[Id, Path(description="store group")]
WindowRole = Annotated[Role, Depends(require_role(
    ADMINS | {Role.STORE_MANAGER}, "set a store's maintenance window"))]

NO_WINDOW = "no maintenance window: rollouts are offered at once"


class StoreSelection(BaseModel):
    """Which stores a publish reaches: named stores, regions and groups (their union);
    all empty: every store. Shared by the content routes (audio, screens)."""

    model_config = ConfigDict(extra="forbid")

    stores: list[Id] = Field(default_factory=list, max_length=10_000)
    regions: list[Id] = Field(default_factory=list, max_length=100)
    groups: list[Id] = Field(default_factory=list, max_length=100)

    @property
    def everything(self) -> bool:
        return not (self.stores or self.regions or self.groups)


class GroupPublic(BaseModel):
    group: str
    stores: list[str]


class MaintenancePut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str = Field(min_length=1, max_length=64, description="IANA, e.g. Europe/Berlin")
    window: str = Field(description="daily, local time, HH:MM-HH:MM; may cross midnight")


class MaintenancePublic(BaseModel):
    store_id: str
    timezone: str | None
    window: str | None
    note: str  # what it means for rollouts


def _store(session: Session, store_id: str) -> None:
    if session.get(Store, store_id) is None:
        raise ApiProblem(404, f"no store {store_id!r}", reason="unknown_store")


def _group(session: Session, group: str) -> GroupPublic:
    return GroupPublic(group=group, stores=list(session.scalars(
        select(StoreGroup.store_id).where(StoreGroup.group_id == group)
        .order_by(StoreGroup.store_id))))


@router.put("/groups/{group}/stores/{store_id}", summary="Put a store in a group",
            responses={404: {"description": "unknown store"}})
async def put_group(group: GroupId, store_id: StoreId, app: StateDep,
                    _: AdminRole) -> GroupPublic:
    def run() -> GroupPublic:
        with app.writer.begin() as session:
            _store(session, store_id)
            if session.get(StoreGroup, (group, store_id)) is None:
                session.add(StoreGroup(group_id=group, store_id=store_id))
                session.flush()
            return _group(session, group)
    return await asyncio.to_thread(run)


@router.delete("/groups/{group}/stores/{store_id}", status_code=204,
               summary="Take a store out of a group",
               responses={404: {"description": "the store is not in the group"}})
async def delete_group(group: GroupId, store_id: StoreId, app: StateDep,
                       _: AdminRole) -> Response:
    def run() -> int:
        with app.writer.begin() as session:
            return int(session.execute(delete(StoreGroup).where(  # type: ignore[attr-defined]
                StoreGroup.group_id == group, StoreGroup.store_id == store_id)).rowcount)
    if not await asyncio.to_thread(run):
        raise ApiProblem(404, f"store {store_id!r} is not in group {group!r}",
                         reason="not_in_group")
    return Response(status_code=204)


@router.get("/groups", summary="Store groups and their stores")
def list_groups(session: SessionDep, _: AdminRole) -> list[GroupPublic]:
    out: dict[str, list[str]] = {}
    for group, store_id in session.execute(select(StoreGroup.group_id, StoreGroup.store_id)
                                           .order_by(StoreGroup.group_id,
                                                     StoreGroup.store_id)):
        out.setdefault(group, []).append(store_id)
    return [GroupPublic(group=g, stores=s) for g, s in out.items()]


def _maintenance(store_id: str, row: StoreMaintenance | None) -> MaintenancePublic:
    if row is None:
        return MaintenancePublic(store_id=store_id, timezone=None, window=None, note=NO_WINDOW)
    window = Window(row.timezone, row.start_min, row.end_min)
    return MaintenancePublic(store_id=store_id, timezone=row.timezone, window=window.span,
                             note=f"rollouts are offered {window.span} {row.timezone} "
                                  "local time only")


@router.put("/stores/{store_id}/maintenance", summary="Set a store's time zone and daily "
            "maintenance window (rollouts are offered only inside it)",
            responses={404: {"description": "unknown store"},
                       422: {"description": "unknown time zone or a malformed window"}})
async def put_maintenance(store_id: StoreId, body: MaintenancePut, app: StateDep,
                          _: WindowRole) -> MaintenancePublic:
    try:
        window = Window.parse(body.timezone, body.window)
    except WindowError as err:
        raise ApiProblem(422, err.detail, reason=err.reason) from err

    def run() -> MaintenancePublic:
        with app.writer.begin() as session:
            _store(session, store_id)
            row = session.get(StoreMaintenance, store_id) or StoreMaintenance(store_id=store_id)
            row.timezone, row.start_min, row.end_min = (window.timezone, window.start_min,
                                                        window.end_min)
            row.updated_ms = app.clock.now_ms()
            session.add(row)
            return _maintenance(store_id, row)
    return await asyncio.to_thread(run)


@router.get("/stores/{store_id}/maintenance", summary="A store's maintenance window",
            responses={404: {"description": "unknown store"}})
def get_maintenance(store_id: StoreId, session: SessionDep, _: ReadRole) -> MaintenancePublic:
    _store(session, store_id)
    return _maintenance(store_id, session.get(StoreMaintenance, store_id))


@router.delete("/stores/{store_id}/maintenance", summary="Remove a store's maintenance "
               "window (rollouts are then offered at once)",
               responses={404: {"description": "unknown store"}})
async def delete_maintenance(store_id: StoreId, app: StateDep,
                             _: WindowRole) -> MaintenancePublic:
    def run() -> MaintenancePublic:
        with app.writer.begin() as session:
            _store(session, store_id)
            row = session.get(StoreMaintenance, store_id)
            if row is not None:
                session.delete(row)
            return _maintenance(store_id, None)
    return await asyncio.to_thread(run)
