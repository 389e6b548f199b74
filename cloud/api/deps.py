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
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloud.api.problems import ApiProblem
from cloud.metrics import ApiMetrics
from cloud.publish import Publisher
from cloud.settings import CloudSettings, Role
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

_bearer = HTTPBearer(auto_error=False, description="an API token; roles decide what it may do")


def get_role(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Role:
    challenge = {"WWW-Authenticate": 'Bearer realm="storefleet"'}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiProblem(401, "missing bearer token", reason="unauthenticated", headers=challenge)
    presented = credentials.credentials.encode()
    role: Role | None = None
    # Compare against every token in constant time, so timing says nothing about
    # how much of a guess was right.
    for token, token_role in state.settings.api_tokens.items():
        if hmac.compare_digest(presented, token.encode()):
            role = token_role
    if role is None:
        raise ApiProblem(401, "unknown bearer token", reason="unauthenticated", headers=challenge)
    return role


RoleDep = Annotated[Role, Depends(get_role)]

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
