"""The staff assistant's API (decision 0065), under ``/staff``; the page is ``/staff/``.

    GET  /staff/me                                   who the token is (the page asks first)
    POST /staff/stores/{store_id}/assistants         register an assistant (manager, HQ)
    DELETE /staff/stores/{store_id}/assistants/{id}  retire one
    POST /staff/stores/{store_id}/join-code          an assistant's signed join code + QR
    POST /staff/join                                 a shopper joins with it (the member
                                                     app's backend, hq-admin; idempotent)
    POST /staff/stores/{store_id}/counter            the member at the counter (code or id)
    GET  /staff/stores/{store_id}/birthdays          home members' birthdays, next N days
    GET  /staff/stores/{store_id}/lapsed             home members with no purchase in N days
    POST /staff/stores/{store_id}/lapsed/{member_id}/coupon   the one-tap coupon
    GET  /staff/stores/{store_id}/rankings/store     the store's figures and ranks
    GET  /staff/stores/{store_id}/rankings/assistants the store's assistants, ranked

Every store route has ``store_id`` in its path, so the router-wide scope check
(``enforce_path_scope``) answers 403 ``forbidden_store`` for another store's data; a
store-assistant token must also name an active assistant of its store (403
``unknown_assistant`` / ``retired_assistant``). Refusals are problem+json, counted in
``storefleet_staff_refused_total{reason}`` and logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Annotated, TypeVar

import qrcode
import qrcode.image.svg
from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from cloud.api.deps import Principal, PrincipalDep, StateDep, require_role
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.api.routes.retail_common import problem_of, require_store
from cloud.api.schemas import Text
from cloud.loyalty import errors as le
from cloud.settings import Role
from cloud.staff import assistants
from cloud.staff import join as joining
from cloud.staff.errors import (
    JoinCodeRefused,
    NoCampaign,
    NotAssistant,
    NotLapsed,
    StaffError,
)
from cloud.staff.metrics import StaffMetrics
from protocols import joincode, membercode
from protocols.ids import Id, SignedCode

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/staff", tags=["staff assistant"], route_class=JsonRoute)
PAGE = FsPath(__file__).parents[1] / "static" / "staff"
StoreId = Annotated[Id, Path(description="store id")]
AssistantId = Annotated[Id, Path(description="assistant id (their token's name)")]
T = TypeVar("T")

_STAFF = frozenset({Role.STORE_ASSISTANT, Role.STORE_MANAGER, Role.HQ_ADMIN})
_MANAGE = frozenset({Role.STORE_MANAGER, Role.HQ_ADMIN})
StaffRole = Annotated[Role, Depends(require_role(_STAFF, "use the staff assistant"))]
ManageRole = Annotated[Role, Depends(require_role(_MANAGE, "manage a store's assistants"))]
# Joining is the member app's backend calling with the code its user scanned (as for the
# member code keys, decision 0064): an HQ token, never a store's.
JoinRole = Annotated[Role, Depends(require_role(frozenset({Role.HQ_ADMIN}),
                                                "enrol members by join code"))]


@dataclass
class StaffState:
    metrics: StaffMetrics
    secret: SecretStr | None  # the member-code secret: member codes and the join key
    winback_campaign: str = "winback"  # the campaign of the one-tap coupon
    lapsed_days: int = 60  # default "no purchase in N days"
    join_valid_s: int = 86_400  # a join code shown on a phone: valid for the day
    # Member codes accepted at counters of this process, each once (protocols.membercode)
    guard: membercode.ReplayGuard = field(default_factory=membercode.ReplayGuard)
    guard_lock: threading.Lock = field(default_factory=threading.Lock)

    def secret_bytes(self) -> bytes:
        if self.secret is None:
            raise le.NotConfigured("member_code_secret (STOREFLEET_MEMBER_CODE_SECRET)")
        return self.secret.get_secret_value().encode()

    def check_member_code(self, text: str, *, now_ms: int) -> str:
        secret = self.secret_bytes()

        def keys(member_id: str, day: int) -> bytes:
            return membercode.day_key(secret, member_id, day=day)

        with self.guard_lock:  # the guard is a dict; routes run in a thread pool
            return membercode.verify(text, keys=keys, now_ms=now_ms,
                                     guard=self.guard).member_id


def get_staff(request: Request) -> StaffState:
    staff: StaffState = request.app.state.staff
    return staff


StaffDep = Annotated[StaffState, Depends(get_staff)]

_CODE_STATUS = {"malformed": 422, "legacy_disabled": 422, "expired": 410,
                "not_yet_valid": 410, "forged": 403, "unknown_member": 403, "replayed": 409,
                "unknown_assistant": 409, "retired": 410}


def staff_problem(err: Exception) -> ApiProblem:
    match err:
        case JoinCodeRefused():
            return ApiProblem(_CODE_STATUS[err.reason], str(err), reason=f"join_{err.reason}")
        case membercode.CodeRefused():
            return ApiProblem(_CODE_STATUS[err.reason], str(err), reason=f"code_{err.reason}")
        case NotAssistant():
            return ApiProblem(403, str(err), reason=f"{err.why}_assistant")
        case NotLapsed():
            return ApiProblem(409, str(err), reason="not_lapsed")
        case NoCampaign():
            return ApiProblem(409, str(err), reason="no_winback_campaign")
    return problem_of(err)


def _run(state: StateDep, staff: StaffState, work: Callable[[Session], T], *,
         write: bool = False) -> T:
    """``work`` in a reader session or one writer transaction; refusals become problems,
    each counted and logged."""
    try:
        if write:
            with state.writer.begin() as session:
                return work(session)
        with state.reader() as session:
            return work(session)
    except (StaffError, membercode.CodeRefused, le.LoyaltyError, ValueError) as err:
        problem = staff_problem(err)
        staff.metrics.refused.labels(reason=problem.reason).inc()
        logger.warning("staff: %s (%s)", err, problem.reason)
        raise problem from err


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    assistant_id: str | None  # a store-assistant token's assistant
    display_name: str | None


def get_caller(principal: PrincipalDep, state: StateDep, staff: StaffDep,
               _: StaffRole) -> Caller:
    if principal.role is not Role.STORE_ASSISTANT:
        return Caller(principal=principal, assistant_id=None, display_name=None)
    (store,) = principal.stores  # exactly one: cloud.settings refuses anything else
    row = _run(state, staff, lambda s: assistants.active_assistant(
        s, assistant_id=principal.name, store_id=store))
    return Caller(principal=principal, assistant_id=row.assistant_id,
                  display_name=row.display_name)


CallerDep = Annotated[Caller, Depends(get_caller)]


class Me(BaseModel):
    role: str
    name: str
    assistant_id: str | None
    display_name: str | None
    stores: list[str] = Field(description="the token's stores; empty: every store")
    currency: str = Field(description="the chain's currency: money is in its minor units")


@router.get("/me", summary="Who this token is (the page asks first)")
def me(caller: CallerDep, state: StateDep) -> Me:
    p = caller.principal
    return Me(role=p.role.value, name=p.name, assistant_id=caller.assistant_id,
              display_name=caller.display_name, stores=sorted(p.stores),
              currency=state.settings.currency)


class AssistantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assistant_id: Id = Field(description="the `name` of the assistant's API token")
    display_name: Annotated[Text, Field(min_length=1, max_length=100)]


class AssistantPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    assistant_id: str
    store_id: str
    display_name: str
    active: bool
    created_ms: int


@router.post("/stores/{store_id}/assistants", status_code=201,
             summary="Register (or rename, or bring back) an assistant of the store",
             responses={200: {"model": AssistantPublic, "description": "already an "
                              "assistant of this store: renamed, or brought back"},
                        404: {"description": "unknown store"},
                        409: {"description": "the id is an assistant of another store"}})
def add_assistant(store_id: StoreId, body: AssistantCreate, response: Response, state: StateDep,
                  staff: StaffDep, _: ManageRole) -> AssistantPublic:
    def work(s: Session) -> AssistantPublic:
        require_store(s, store_id)
        row, created = assistants.register(s, store_id=store_id,
                                           assistant_id=body.assistant_id,
                                           display_name=body.display_name,
                                           now_ms=state.clock.now_ms())
        if not created:
            response.status_code = 200
        return AssistantPublic.model_validate(row)

    return _run(state, staff, work, write=True)


@router.delete("/stores/{store_id}/assistants/{assistant_id}",
               summary="Retire an assistant: their token is refused, their figures stay",
               responses={404: {"description": "no such assistant at this store"}})
def retire_assistant(store_id: StoreId, assistant_id: AssistantId, state: StateDep, staff: StaffDep,
                     _: ManageRole) -> AssistantPublic:
    return _run(state, staff, lambda s: AssistantPublic.model_validate(
        assistants.retire(s, store_id=store_id, assistant_id=assistant_id)), write=True)


class JoinCodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assistant_id: Id | None = Field(default=None, description="whose code; an assistant's "
                                    "token: its own (the default)")
    valid_s: Annotated[int, Field(ge=60, le=30 * 86_400)] | None = Field(
        default=None, description="how long it is valid (a day by default, 30 days at most "
        "for a printed badge)")


class JoinCodePublic(BaseModel):
    code: str = Field(description="the QR's text (protocols.joincode)")
    store_id: str
    assistant_id: str
    expires_ms: int
    qr_svg: str = Field(description="the code as an SVG QR, for the page")


@router.post("/stores/{store_id}/join-code", summary="An assistant's signed join code",
             responses={403: {"description": "another assistant's code"},
                        404: {"description": "no such assistant at this store"},
                        503: {"description": "no member_code_secret configured"}})
def join_code(store_id: StoreId, body: JoinCodeRequest, state: StateDep, staff: StaffDep,
              caller: CallerDep) -> JoinCodePublic:
    wanted = body.assistant_id or caller.assistant_id
    if wanted is None or (caller.assistant_id is not None and wanted != caller.assistant_id):
        staff.metrics.refused.labels(reason="not_own_code").inc()
        raise ApiProblem(403 if wanted else 422, "an assistant asks for their own join code; "
                         "a manager names the assistant", reason="not_own_code")
    now = state.clock.now_ms()

    def work(s: Session) -> JoinCodePublic:
        try:
            assistants.active_assistant(s, assistant_id=wanted, store_id=store_id)
        except NotAssistant as err:
            raise le.NotFound("assistant", f"{wanted} at store {store_id}") from err
        expires = now + 1000 * (body.valid_s or staff.join_valid_s)
        code = joincode.make(joincode.join_key(staff.secret_bytes()), store_id=store_id,
                             assistant_id=wanted, expires_ms=expires)
        svg = qrcode.make(code, image_factory=qrcode.image.svg.SvgPathImage, border=2)
        return JoinCodePublic(code=code, store_id=store_id, assistant_id=wanted,
                              expires_ms=expires // 1000 * 1000,
                              qr_svg=svg.to_string(encoding="unicode"))

    return _run(state, staff, work)


class JoinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: SignedCode = Field(description="the join code's text as scanned")
    join_id: Id = Field(description="idempotency key the app chose for this join")
    phone: Annotated[str, Field(max_length=32)] | None = Field(
        default=None, description="stored only as a keyed hash, for look-up")
    birthday: Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")] \
        | None = Field(default=None, description="MM-DD (no year is kept)")

    def month_day(self) -> int | None:
        if self.birthday is None:
            return None
        month, day = (int(p) for p in self.birthday.split("-"))
        # 2000 is a leap year: 02-29 is a day, 02-30 and 04-31 are not
        dt.date(2000, month, day)  # ValueError -> 422 invalid
        return month * 100 + day


class Joined(BaseModel):
    member_id: str
    store_id: str
    assistant_id: str
    joined_ms: int
    replayed: bool


@router.post("/join", status_code=201, summary="A shopper joins with an assistant's join "
             "code: a member of that store, recruited by that assistant (idempotent by "
             "join_id)",
             responses={200: {"model": Joined, "description": "this join_id joined "
                              "before: the same member (replayed)"},
                        403: {"description": "join_forged: not a code this cloud signed"},
                        409: {"description": "the phone is a member already, the join_id "
                              "was another join, or join_unknown_assistant"},
                        410: {"description": "join_expired, or join_retired: the assistant "
                              "left"},
                        422: {"description": "join_malformed, or an invalid birthday"},
                        503: {"description": "member_code_secret or member_hash_key not "
                              "configured"}})
def join(body: JoinRequest, response: Response, state: StateDep, staff: StaffDep,
         _: JoinRole) -> Joined:
    now = state.clock.now_ms()

    def work(s: Session) -> Joined:
        done = joining.join(s, code_text=body.code,
                            key=joincode.join_key(staff.secret_bytes()),
                            join_id=body.join_id, now_ms=now,
                            hash_key=state.settings.member_hash_key, phone=body.phone,
                            birthday=body.month_day())
        return Joined(member_id=done.member_id, store_id=done.store_id,
                      assistant_id=done.assistant_id, joined_ms=done.joined_ms,
                      replayed=done.replayed)

    try:
        out = _run(state, staff, work, write=True)
    except sa_exc.IntegrityError:
        # The same join_id at the same moment on another connection: that one won; this
        # try finds its member (a second IntegrityError would be a bug: a 500).
        out = _run(state, staff, work, write=True)
    if out.replayed:
        response.status_code = 200
    staff.metrics.joins.labels(result="replayed" if out.replayed else "created").inc()
    return out


def install_page(app: FastAPI) -> None:
    """Serve the assistants' page (static HTML + JS, no CDN) at ``/staff/``."""
    app.mount("/staff", StaticFiles(directory=PAGE, html=True), name="staff-page")
