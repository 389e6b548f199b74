"""Request (``...Create`` / ``...Update``) and response (``...Public``) schemas.

Response schemas are separate from the database models, so a column added for
ingest bookkeeping (``dead_bd_seq``) never leaks into the API by accident.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from protocols.commands import REASON_MAX
from protocols.ids import Id

# Every id in a path, query or body is the one ``protocols.ids.Id`` (decision 0031).

# Every integer column is a PostgreSQL BIGINT (cloud.db.models maps int to BigInteger):
# a larger number reached the database and came back as a 500 (issue 12). Every integer
# the API takes (path, query, body) is a BigInt, narrowed further where it means less
# (``Annotated[BigInt, Path(ge=1)]`` for a version), so it is refused with a 422 first.
BIGINT_MAX = 2**63 - 1
BigInt = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
SignedBigInt = Annotated[int, Field(ge=-BIGINT_MAX - 1, le=BIGINT_MAX)]

# Free text that is stored: PostgreSQL text cannot hold NUL, and a lone surrogate has no
# UTF-8 form (any constraint makes pydantic refuse one, so the pattern catches both).
Text = Annotated[str, Field(pattern=r"^[^\x00]*$")]


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class StorePublic(Public):
    store_id: str
    online: bool
    agent_version: str | None
    bd_seq: int | None
    last_birth_ms: int | None
    last_death_ms: int | None
    last_seen_ms: int | None
    devices_total: int = 0
    devices_online: int = 0


class StoreDetailPublic(StorePublic):
    birth: dict[str, Any] | None = Field(description="the last accepted birth, as received")


class DevicePublic(Public):
    store_id: str
    device_id: str
    kind: str
    online: bool
    model: str | None
    fw: str | None
    last_seen_ms: int | None
    health: dict[str, Any] | None = Field(description="latest telemetry values")


class EventPublic(Public):
    id: str
    store_id: str
    kind: str
    device_id: str | None
    seq: int
    ts: int
    historical: bool
    data: dict[str, Any]
    received_ms: int


class EventPage(BaseModel):
    items: list[EventPublic]
    next: str | None = Field(
        description="cursor of the next page (pass it as `cursor`; the same as the "
        "`X-Next-Cursor` header); null at the end"
    )


class ShadowPublic(Public):
    store_id: str
    target: str
    desired: dict[str, Any] | None
    desired_version: int
    reported: dict[str, Any] | None
    reported_version: int | None
    in_sync: bool = Field(default=False, description="the store applied the latest desired version")
    delta: dict[str, Any] = Field(
        default_factory=dict, description="desired keys whose reported value differs (not yet "
        "applied, rejected or unsupported), with their desired value")
    updated_ms: int


class ShadowDesiredUpdate(BaseModel):
    """PUT replaces the desired state, PATCH merges into it (RFC 7386: objects merge
    recursively); in both a ``null`` value deletes the key."""

    model_config = ConfigDict(extra="forbid")

    state: dict[str, Any] = Field(examples=[{"log_level": "debug"}])
    expected_version: int | None = Field(
        default=None, ge=0, description="the desired version this change was made against "
        "(0: no shadow yet); another one is a 409 and nothing is written. Omitted: "
        "unconditional")


class CommandCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Id = Field(examples=["ping"])
    args: dict[str, Any] = Field(default_factory=dict)
    target: Id = "agent"
    # One day at most: a command older than that is better sent again than run late.
    ttl_s: int = Field(default=60, ge=1, le=86_400)
    reason: str | None = Field(
        default=None, max_length=REASON_MAX, examples=["customer's card stuck, ticket 4711"],
        description="why it is sent; required (not blank) for a sensitive command (opening "
        "a cash drawer, unlocking a cabinet door: protocols.commands), stored with it")


class CommandPublic(Public):
    cmd_id: str
    store_id: str
    target: str
    name: str
    args: dict[str, Any]
    status: str = Field(
        description="pending, undeliverable, ok, error, expired, unknown_command or rejected"
    )
    expires_at: int
    created_ms: int
    result: dict[str, Any] | None
    error: str | None
    completed_ms: int | None
    sender: str | None = Field(description="who sent it: the token's name, <role>:<token "
                               "fingerprint> without one, or rollout:<id> for the cloud's "
                               "own offers; null for commands older than the record")
    sender_role: str | None = Field(description="the sender's role, or system")
    reason: str | None = Field(description="why it was sent, as stated")


class TaskStatePublic(BaseModel):
    state: str = Field(description="running, restarting (it crashed; started again after "
                                   "a backoff) or stopped")
    restarts: int = Field(description="crashes since the process started")
    last_error: str | None = Field(default=None, description="the last crash, kept after it")


class HealthPublic(BaseModel):
    status: str
    database: str
    tasks: dict[str, TaskStatePublic] | None = Field(
        default=None, description="the API process's background tasks (ingest, scheduler)")


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="per-field validation errors (422 only)"
    )
