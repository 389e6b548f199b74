"""Store identities (decision 0035): provision and revoke (hq-admin), enrol (the box,
with its one-time token instead of an API token).

    POST /api/v1/stores/{store_id}/provision  -> {store_id, token, expires_ms}
    POST /api/v1/enrol {"token": ...}         -> application/gzip: the bundle, once
    POST /api/v1/stores/{store_id}/revoke     -> {store_id, status: "revoked"}
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.deps import AdminRole, AppState, StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.enrolment import service
from cloud.enrolment.errors import EnrolmentError
from cloud.enrolment.metrics import EnrolmentMetrics
from protocols.broker import BrokerAddress
from protocols.ids import Id

router = APIRouter(prefix="/stores", tags=["enrolment"], route_class=JsonRoute)
# Outside the bearer-token router: the one-time token is the credential.
public_router = APIRouter(tags=["enrolment"], route_class=JsonRoute)

StoreId = Annotated[Id, Path(description="store id")]
T = TypeVar("T")

_STATUS = {"not_configured": 503, "unknown_token": 401, "token_expired": 401,
           "unknown_store": 404, "broker": 502}


class ProvisionPublic(BaseModel):
    store_id: str
    token: str = Field(description="one-time enrolment token; `storefleet edge enrol "
                                   "--token` on the box")
    expires_ms: int


class EnrolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # token_urlsafe(32) is 43 characters; 128 leaves room and bounds the input.
    token: str = Field(min_length=16, max_length=128)


class RevokePublic(BaseModel):
    store_id: str
    status: str


def _metrics(request: Request) -> EnrolmentMetrics:
    metrics: EnrolmentMetrics = request.app.state.enrolment_metrics
    return metrics


def _admin(state: AppState) -> BrokerAddress:
    enrolment = state.settings.enrolment
    if enrolment.broker_admin_password is None:
        raise EnrolmentError("not_configured", "no STOREFLEET_BROKER_ADMIN_PASSWORD: the "
                                               "broker cannot be told")
    return state.settings.mqtt.with_credentials(
        username=enrolment.broker_admin_username,
        password=enrolment.broker_admin_password.get_secret_value())


async def _counted(request: Request, action: str, work: Callable[[], T]) -> T:
    try:
        result = await asyncio.to_thread(work)  # certificate signing and the database block
    except EnrolmentError as err:
        _metrics(request).actions.labels(action=action, outcome=err.reason).inc()
        raise ApiProblem(_STATUS.get(err.reason, 400), err.detail, reason=err.reason) from err
    return result


async def _tell_broker(request: Request, state: AppState, action: str,
                       change: service.BrokerChange) -> None:
    def crl() -> None:
        with state.reader() as session:
            service.write_crl(session, state.settings.enrolment)

    try:
        if change.crl_changed:
            await asyncio.to_thread(crl)
        await service.apply_broker(change, admin=_admin(state))
    except EnrolmentError as err:
        _metrics(request).actions.labels(action=action, outcome=err.reason).inc()
        raise ApiProblem(_STATUS.get(err.reason, 502), err.detail, reason=err.reason) from err
    _metrics(request).actions.labels(action=action, outcome="ok").inc()


_NOT_CONFIGURED: dict[int | str, dict[str, Any]] = {
    503: {"description": "no broker admin password (`not_configured`)"}}
_BROKER: dict[int | str, dict[str, Any]] = {
    502: {"description": "the broker's plugin refused or did not answer (`broker`)"}}


@router.post("/{store_id}/provision", response_model=ProvisionPublic,
             responses={503: {"description": "no STOREFLEET_STORE_BROKER_URL "
                                             "(`not_configured`)"}})
async def provision(store_id: StoreId, request: Request, state: StateDep,
                    _: AdminRole) -> ProvisionPublic:
    """A one-time enrolment token for the store (a new one voids any unused one)."""
    def work() -> service.Provisioned:
        with state.writer.begin() as session:
            return service.provision(session, store_id, settings=state.settings.enrolment,
                                     now_ms=state.clock.now_ms())

    done = await _counted(request, "provision", work)
    _metrics(request).actions.labels(action="provision", outcome="ok").inc()
    return ProvisionPublic(store_id=done.store_id, token=done.token,
                           expires_ms=done.expires_ms)


@router.post("/{store_id}/revoke", response_model=RevokePublic,
             responses={404: {"description": "never provisioned (`unknown_store`)"},
                        **_BROKER, **_NOT_CONFIGURED})
async def revoke(store_id: StoreId, request: Request, state: StateDep,
                 _: AdminRole) -> RevokePublic:
    """Cut the store off: its certificate into the CRL, its broker client disabled (and
    kicked), its device tokens refused by the API. Provision again to readmit it."""
    _admin(state)  # refuse before changing anything when the broker cannot be told

    def work() -> service.BrokerChange:
        with state.writer.begin() as session:
            return service.revoke(session, store_id, now_ms=state.clock.now_ms())

    change = await _counted(request, "revoke", work)
    await _tell_broker(request, state, "revoke", change)
    return RevokePublic(store_id=store_id, status="revoked")


@public_router.post("/enrol", response_class=Response,
                    responses={200: {"content": {"application/gzip": {}},
                                     "description": "the store's bundle (tar.gz)"},
                               401: {"description": "unknown, used or expired token "
                                                    "(`unknown_token`, `token_expired`)"},
                               **_BROKER, **_NOT_CONFIGURED})
async def enrol(body: EnrolRequest, request: Request, state: StateDep) -> Response:
    """The box's identity bundle for a one-time token; the token is then spent."""
    try:
        _admin(state)
    except EnrolmentError as err:
        raise ApiProblem(503, err.detail, reason=err.reason) from err

    def work() -> tuple[bytes, service.BrokerChange]:
        with state.writer.begin() as session:
            return service.enrol(session, body.token, settings=state.settings.enrolment,
                                 now_ms=state.clock.now_ms())

    data, change = await _counted(request, "enrol", work)
    await _tell_broker(request, state, "enrol", change)
    return Response(data, media_type="application/gzip", headers={
        "Content-Disposition": f'attachment; filename="{change.store_id}.tar.gz"'})
