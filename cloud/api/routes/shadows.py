"""Device and agent shadows: desired state set here, reported state from ingest.

    GET   /stores/{store}/shadow/{target}                    desired, reported, delta
    PUT   /stores/{store}/shadow/{target}/desired            replace the desired state
    PATCH /stores/{store}/shadow/{target}/desired            merge into it (RFC 7386)
    GET   /stores/{store}/devices/{device}/shadow            the same for one device
    PUT   /stores/{store}/devices/{device}/shadow/desired
    PATCH /stores/{store}/devices/{device}/shadow/desired

A write may name the ``expected_version`` it was made against: another version is a
409 (``stale_version``) and nothing is written, so two people editing one device cannot
overwrite each other unseen. ``null`` deletes a key. A desired state for a device may
hold only keys a driver declares in ``protocols.shadow_keys`` (a 422 naming them, not a
version the agent would publish-and-drop), and for a device the cloud knows, only its
family's keys; it is capped in size (413) and depth (422) like the agent caps it
(decision 0037). The delta is computed against what the store reported it applied.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path
from sqlalchemy.orm import Session, sessionmaker

from cloud.api.deps import AdminRole, AppState, ReadRole, SessionDep, StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.schemas import ShadowDesiredUpdate, ShadowPublic
from cloud.db.models import Device, Shadow
from cloud.errors import PublishError
from protocols import topics
from protocols.codec import encode
from protocols.ids import Id
from protocols.messages import ShadowDesired
from protocols.shadow_keys import (
    AGENT,
    DESIRED_KEYS,
    DESIRED_MAX_DEPTH,
    DEVICE_DESIRED_MAX_BYTES,
    DEVICE_KEYS,
    depth,
    encoded_size,
    undeclared,
)

logger = logging.getLogger(__name__)

router = APIRouter(tags=["shadows"], route_class=JsonRoute)
AGENT_PATH = "/stores/{store_id}/shadow/{target}"
DEVICE_PATH = "/stores/{store_id}/devices/{device_id}/shadow"

StoreId = Annotated[Id, Path(description="store id")]
Target = Annotated[Id, Path(description='"agent" or a device id')]
DeviceId = Annotated[Id, Path(description="device id")]

_FAMILY = {k.name: k.family for k in DESIRED_KEYS if k.target == "device"}
_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {"description": "expected_version is not the current desired version; nothing "
                         "stored"},
    413: {"description": "the device's desired state is over the size cap; nothing stored"},
    422: {"description": "a device-level key no driver declares (protocols.shadow_keys), "
                         "one the device's family does not apply, or too deep a document; "
                         "nothing stored"},
    503: {"description": "stored, but the broker did not take it; PUT again"},
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes a key,
    anything else replaces. Never mutates its arguments."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def delta(shadow: Shadow) -> dict[str, Any]:
    """Desired keys whose reported value differs. A device reports what its driver
    applied under ``applied`` (``protocols.shadow_keys.DeviceReported``); the agent
    reports its applied keys at the top level."""
    reported = shadow.reported or {}
    if shadow.target != AGENT:
        applied = reported.get("applied")
        reported = applied if isinstance(applied, dict) else {}
    return {k: v for k, v in (shadow.desired or {}).items()
            if k not in reported or reported[k] != v}


def _public(shadow: Shadow) -> ShadowPublic:
    return ShadowPublic.model_validate(shadow).model_copy(
        update={"in_sync": shadow.reported_version == shadow.desired_version,
                "delta": delta(shadow)}
    )


def _get(session: Session, store_id: str, target: str) -> ShadowPublic:
    shadow = session.get(Shadow, (store_id, target))
    if shadow is None:
        raise ApiProblem(404, f"no shadow {target!r} for store {store_id!r}")
    return _public(shadow)


@router.get(AGENT_PATH, summary="Desired and reported state of one shadow, and the delta",
            responses={404: {"description": "no shadow yet"}})
def get_shadow(store_id: StoreId, target: Target, session: SessionDep, _: ReadRole) -> ShadowPublic:
    return _get(session, store_id, target)


@router.get(DEVICE_PATH, summary="A device's desired and reported state, and the delta",
                    responses={404: {"description": "no shadow yet"}})
def get_device_shadow(store_id: StoreId, device_id: DeviceId, session: SessionDep,
                      _: ReadRole) -> ShadowPublic:
    return _get(session, store_id, device_id)


def _check_keys(target: str, state: dict[str, Any]) -> None:
    """Keys set (not deleted) must be declared for a device; before any database work."""
    if refused := undeclared(target, [k for k, v in state.items() if v is not None]):
        declared = ", ".join(sorted(DEVICE_KEYS)) or "none yet"
        raise ApiProblem(
            422, f"no driver handles desired key(s) {', '.join(refused)} for device "
            f"{target!r} (device-level keys: {declared}); send it as a command instead",
            reason="undeclared_shadow_key")


def _check_device(session: Session, store_id: str, target: str, state: dict[str, Any]) -> None:
    """A known device takes its own family's keys only; the size and depth caps."""
    device = session.get(Device, (store_id, target))
    if device is not None and (wrong := sorted(k for k in state if _FAMILY[k] != device.kind)):
        raise ApiProblem(
            422, f"device {target!r} is a {device.kind!r} device; desired key(s) "
            f"{', '.join(f'{k} ({_FAMILY[k]})' for k in wrong)} apply to other families",
            reason="unsupported_shadow_key")
    if (size := encoded_size(state)) > DEVICE_DESIRED_MAX_BYTES:
        raise ApiProblem(413, f"desired state of {target!r} would be {size} bytes; the cap "
                         f"is {DEVICE_DESIRED_MAX_BYTES}", reason="shadow_too_large")
    if (deep := depth(state)) > DESIRED_MAX_DEPTH:
        raise ApiProblem(422, f"desired state of {target!r} is nested {deep} levels deep; the "
                         f"cap is {DESIRED_MAX_DEPTH}", reason="shadow_too_deep")


def _write_desired(
    sessions: sessionmaker[Session], store_id: str, target: str, body: ShadowDesiredUpdate,
    *, patch: bool, now_ms: int
) -> Shadow:
    with sessions.begin() as session:  # an ApiProblem below rolls everything back
        shadow = session.get(Shadow, (store_id, target), with_for_update=True)
        current = shadow.desired_version if shadow is not None else 0
        if body.expected_version is not None and body.expected_version != current:
            raise ApiProblem(
                409, f"desired state of {target!r} is at version {current}, not "
                f"{body.expected_version}: GET it and make the change again",
                reason="stale_version")
        base = (shadow.desired or {}) if patch and shadow is not None else {}
        state = merge_patch(base, body.state)
        if target != AGENT:
            _check_device(session, store_id, target, state)
        if shadow is None:
            shadow = Shadow(store_id=store_id, target=target, desired_version=0,
                            reported=None, reported_version=None)
            session.add(shadow)
        shadow.desired = state
        shadow.desired_version = current + 1
        shadow.updated_ms = now_ms
    return shadow


async def set_desired(app: AppState, store_id: str, target: str, body: ShadowDesiredUpdate,
                      *, patch: bool) -> ShadowPublic:
    """Check, store and publish a desired state (also used by HQ's audio publishing)."""
    _check_keys(target, body.state)
    async with app.shadow_lock:  # versions are published in the order they are stored
        now = app.clock.now_ms()
        shadow = await asyncio.to_thread(_write_desired, app.writer, store_id, target, body,
                                         patch=patch, now_ms=now)
        msg = ShadowDesired(version=shadow.desired_version, ts=now, state=shadow.desired or {})
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


def _device(device_id: str) -> str:
    if device_id == AGENT:
        raise ApiProblem(422, f"{AGENT!r} is the agent's shadow, not a device: use "
                         f"/stores/{{store}}/shadow/{AGENT}", reason="invalid")
    return device_id


@router.put(f"{AGENT_PATH}/desired", responses=_WRITE_RESPONSES,
            summary="Replace the desired state; publishes it retained with the next version")
async def put_desired(
    store_id: StoreId, target: Target, body: ShadowDesiredUpdate, app: StateDep, _: AdminRole
) -> ShadowPublic:
    return await set_desired(app, store_id, target, body, patch=False)


@router.patch(f"{AGENT_PATH}/desired", responses=_WRITE_RESPONSES,
              summary="Merge into the desired state (null deletes a key); publishes it")
async def patch_desired(
    store_id: StoreId, target: Target, body: ShadowDesiredUpdate, app: StateDep, _: AdminRole
) -> ShadowPublic:
    return await set_desired(app, store_id, target, body, patch=True)


@router.put(f"{DEVICE_PATH}/desired", responses=_WRITE_RESPONSES,
                    summary="Replace a device's desired state; its driver applies it")
async def put_device_desired(store_id: StoreId, device_id: DeviceId, body: ShadowDesiredUpdate,
                             app: StateDep, _: AdminRole) -> ShadowPublic:
    return await set_desired(app, store_id, _device(device_id), body, patch=False)


@router.patch(f"{DEVICE_PATH}/desired", responses=_WRITE_RESPONSES,
                      summary="Merge into a device's desired state (null deletes a key)")
async def patch_device_desired(store_id: StoreId, device_id: DeviceId,
                               body: ShadowDesiredUpdate, app: StateDep,
                               _: AdminRole) -> ShadowPublic:
    return await set_desired(app, store_id, _device(device_id), body, patch=True)

