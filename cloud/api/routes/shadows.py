"""Device and agent shadows: desired state set here, reported state from ingest.

A desired state for a device may hold only keys a driver declares in
``protocols.shadow_keys`` (today: none, drivers take commands): anything else is a 422
naming the keys, not a version the agent would publish-and-drop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path
from sqlalchemy.orm import Session, sessionmaker

from cloud.api.deps import AdminRole, ReadRole, SessionDep, StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.schemas import ShadowDesiredUpdate, ShadowPublic
from cloud.db.models import Shadow
from cloud.errors import PublishError
from protocols import topics
from protocols.codec import encode
from protocols.ids import Id
from protocols.messages import ShadowDesired
from protocols.shadow_keys import DEVICE_KEYS, undeclared

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/stores/{store_id}/shadow", tags=["shadows"], route_class=JsonRoute)

StoreId = Annotated[Id, Path(description="store id")]
Target = Annotated[Id, Path(description='"agent" or a device id')]


def _public(shadow: Shadow) -> ShadowPublic:
    return ShadowPublic.model_validate(shadow).model_copy(
        update={"in_sync": shadow.reported_version == shadow.desired_version}
    )


@router.get("/{target}", summary="Desired and reported state of one shadow",
            responses={404: {"description": "no shadow yet"}})
def get_shadow(store_id: StoreId, target: Target, session: SessionDep, _: ReadRole) -> ShadowPublic:
    shadow = session.get(Shadow, (store_id, target))
    if shadow is None:
        raise ApiProblem(404, f"no shadow {target!r} for store {store_id!r}")
    return _public(shadow)


def _bump_desired(
    sessions: sessionmaker[Session], store_id: str, target: str, state: dict[str, Any], now_ms: int
) -> Shadow:
    with sessions.begin() as session:
        shadow = session.get(Shadow, (store_id, target), with_for_update=True)
        if shadow is None:
            shadow = Shadow(store_id=store_id, target=target, desired_version=0,
                            reported=None, reported_version=None)
            session.add(shadow)
        shadow.desired = state
        shadow.desired_version = (shadow.desired_version or 0) + 1
        shadow.updated_ms = now_ms
    return shadow


@router.put(
    "/{target}/desired",
    summary="Set the desired state; publishes it retained with the next version",
    responses={422: {"description": "a device-level key no driver declares "
                     "(protocols.shadow_keys); nothing stored"},
               503: {"description": "stored, but the broker did not take it; PUT again"}},
)
async def put_desired(
    store_id: StoreId, target: Target, body: ShadowDesiredUpdate, app: StateDep, _: AdminRole
) -> ShadowPublic:
    if refused := undeclared(target, body.state):
        declared = ", ".join(sorted(DEVICE_KEYS)) or "none yet"
        raise ApiProblem(
            422, f"no driver handles desired key(s) {', '.join(refused)} for device "
            f"{target!r} (device-level keys: {declared}); send it as a command instead",
            reason="undeclared_shadow_key")
    async with app.shadow_lock:
        now = app.clock.now_ms()
        shadow = await asyncio.to_thread(_bump_desired, app.writer, store_id, target,
                                         body.state, now)
        msg = ShadowDesired(version=shadow.desired_version, ts=now, state=body.state)
        try:
            await app.publisher.publish(
                topics.shadow_desired(store_id, target), encode(msg), qos=1, retain=True
            )
        except PublishError as err:
            app.metrics.publish_failures.labels(kind="shadow_desired").inc()
            logger.error("store %s: desired v%d of %s not published: %s",
                         store_id, msg.version, target, err)
            raise ApiProblem(
                503, f"stored as version {msg.version} but not published ({err.detail}); "
                "PUT again to publish a newer version", reason="publish_failed",
            ) from err
    app.metrics.published.labels(kind="shadow_desired").inc()
    return _public(shadow)
