"""FastAPI dependencies as ``Annotated`` aliases.

    def list_stores(session: SessionDep, _: ReadRole) -> ...

``AppState`` is built once by ``cloud.main.create_app`` and hung on ``app.state``;
nothing here reads globals.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.api.problems import ApiProblem
from cloud.db.models_loyalty import StoreRegion
from cloud.enrolment.service import revoked_stores
from cloud.metrics import ApiMetrics
from cloud.publish import Publisher
from cloud.settings import CloudSettings, Role, TokenGrant
from protocols.clock import Clock


@dataclass
class AppState:
    settings: CloudSettings
    engine: Engine
    reader: sessionmaker[Session]
    writer: sessionmaker[Session]
    publisher: Publisher
    clock: Clock
    registry: CollectorRegistry
    metrics: ApiMetrics
    # Serialises "bump desired version, publish it" within this process, so a
    # retained v3 can never be overwritten by a v2 that lost the race to the broker.
    shadow_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.cloud
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.reader() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API token. Its role decides what it may do; store-manager and device "
    "tokens are bound to stores (field-tech tokens optionally to stores/regions) and get "
    "403 problem+json for any other store, whether the store id is in the path, the "
    "query or the body, or belongs to the order/command addressed.",
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's role, scope (empty = chain-wide) and name (the sender
    recorded with its commands, ``TokenGrant.sender``)."""

    role: Role
    stores: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    name: str = ""

    @property
    def chain_wide(self) -> bool:
        return not (self.stores or self.regions)

    def allowed_stores(self, session: Session) -> frozenset[str] | None:
        """The stores this token may act for; None = every store."""
        if self.chain_wide:
            return None
        if not self.regions:
            return self.stores
        in_regions = session.scalars(select(StoreRegion.store_id).where(
            StoreRegion.region.in_(sorted(self.regions))))
        return self.stores | frozenset(in_regions)

    def check_store(self, session: Session, store_id: str | None) -> None:
        """403 problem unless this token may act for ``store_id``."""
        if self.chain_wide:
            return
        allowed = self.allowed_stores(session)
        if store_id is None or allowed is None or store_id not in allowed:
            raise ApiProblem(403, f"this {self.role.value} token is not valid for store "
                             f"{store_id!r}", reason="forbidden_store")


def get_principal(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    challenge = {"WWW-Authenticate": 'Bearer realm="storefleet"'}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiProblem(401, "missing bearer token", reason="unauthenticated", headers=challenge)
    presented = credentials.credentials.encode()
    found: TokenGrant | None = None
    found_token = ""
    # Compare against every token in constant time, so timing says nothing about
    # how much of a guess was right.
    for token, grant in state.settings.api_tokens.items():
        if hmac.compare_digest(presented, token.encode()):
            found, found_token = grant, token
    if found is None:
        raise ApiProblem(401, "unknown bearer token", reason="unauthenticated", headers=challenge)
    if found.role is Role.DEVICE and found.stores:
        # A revoked store's device tokens stop working at once (decision 0035).
        with state.reader() as session:
            if revoked := revoked_stores(session, frozenset(found.stores)):
                raise ApiProblem(401, f"store {revoked[0]} is revoked",
                                 reason="store_revoked", headers=challenge)
    return Principal(role=found.role, stores=frozenset(found.stores),
                     regions=frozenset(found.regions), name=found.sender(found_token))


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_role(principal: PrincipalDep) -> Role:
    return principal.role


RoleDep = Annotated[Role, Depends(get_role)]


def enforce_path_scope(request: Request, principal: PrincipalDep, state: StateDep) -> None:
    """Router-wide: a ``store_id`` in the path or the query must be in the token's scope.

    Installed on the whole ``/api/v1`` router (``cloud.main``), so a new route taking a
    store id is covered without remembering to add a check. Store ids in a body, and
    stores reached through another id (an order, a command), are checked by the route.
    """
    if principal.chain_wide:
        return
    wanted = {v for v in (request.path_params.get("store_id"),
                          request.query_params.get("store_id")) if v is not None}
    if not wanted:
        return
    with state.reader() as session:
        for store_id in sorted(wanted):
            principal.check_store(session, store_id)


def scoped_store_filter(session: Session, principal: Principal,
                        store_id: str | None) -> frozenset[str] | None:
    """For list routes: the stores to restrict results to (None = no restriction).

    A chain-wide token gets ``{store_id}`` or everything; a scoped token asking for no
    store in particular sees only its own stores."""
    if store_id is not None:
        principal.check_store(session, store_id)
        return frozenset({store_id})
    return principal.allowed_stores(session)


READERS = frozenset({Role.HQ_ADMIN, Role.FIELD_TECH, Role.STORE_MANAGER})
COMMANDERS = frozenset({Role.HQ_ADMIN, Role.FIELD_TECH})
ADMINS = frozenset({Role.HQ_ADMIN})


def require_role(allowed: frozenset[Role], what: str) -> object:
    """A dependency that lets only ``allowed`` roles through (403 problem otherwise)."""
    def check(role: RoleDep) -> Role:
        if role not in allowed:
            raise ApiProblem(403, f"role {role.value!r} may not {what}", reason="forbidden")
        return role

    return check


ReadRole = Annotated[Role, Depends(require_role(READERS, "read fleet data"))]
CommandRole = Annotated[Role, Depends(require_role(COMMANDERS, "send commands"))]
AdminRole = Annotated[Role, Depends(require_role(ADMINS, "change desired state"))]
