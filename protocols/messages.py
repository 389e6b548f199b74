"""Message models for the uplink and the store-local bus (docs/architecture.md#messages).

Every model has a ``v`` field; unknown fields are ignored, missing or ill-typed
ones are rejected (strict types: ``"5"`` is not an int). Money is integer minor
units, times are UTC epoch milliseconds, every id is an ``Id`` (``protocols.ids``, the
one id rule, checked on decode); event ids are UUIDv7 strings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from protocols.commands import REASON_MAX, SENDER_NAME_MAX
from protocols.ids import Id

# Event kinds the cloud accepts. A new kind is added here first, so that store
# and cloud agree; an event of any other kind is rejected as ``unknown_kind``.
EVENT_KINDS: frozenset[str] = frozenset(
    {
        "sale",
        "refund",
        "vend",
        "coupon_issued",
        "coupon_redeemed",
        "member_visit",
        "device_alarm",
        "device_event",
        "order_status",
        "cart_session",
        "label_ack",
        "firmware_update",  # a device firmware update's outcome (decision 0039)
        "rollout_status",  # a step of a rollout's install on the box (decision 0040)
        "content_status",  # the content manifest a box runs (decision 0046)
        "member_spend",  # points or stored value spent at a box offline (decision 0064)
        "member_spend_release",  # an authorised spend whose sale was not recorded (0068)
        "cabinet_pickup",  # an order's pickup at a vending cabinet (decision 0066)
    }
)

EpochMs = Annotated[int, Field(ge=0, le=10**14)]
Scalar = str | int | float | bool | None


class Msg(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


# ---- birth / death -----------------------------------------------------------
#
# What a store may put into its birth, declared once (decision 0024). The agent builds
# its birth within these bounds (edge_agent/uplink/birth.py: a device state over them is
# refused at the edge, devices past them are left out and alarmed); ingest refuses a
# birth outside them with an explicit ``BirthRefused`` on ``ready``, never silence.

# A model name or firmware version is a product code, never prose (the cloud's
# columns take 128 characters; 64 leaves a store's birth room for many devices).
DEVICE_TEXT_MAX = 64
AGENT_VERSION_MAX = 64  # "1.2.3+g0123abcd.dirty" style; a version, not a changelog
# The whole birth, encoded: under ingest's 256 KiB payload cap (codec
# DEFAULT_MAX_PAYLOAD) with room to spare.
BIRTH_MAX_BYTES = 192 * 1024
# Devices named in one birth; a store has a few hundred. 1,500 entries of a typical
# ~120 bytes (short ids, model, fw, last_seen) fit in BIRTH_MAX_BYTES; with longer
# ones the agent stops at the bytes first.
BIRTH_MAX_DEVICES = 1_500

DeviceText = Annotated[str, Field(max_length=DEVICE_TEXT_MAX)]


def device_text_fits(*values: str | None) -> bool:
    """True when every given model / firmware string is within ``DEVICE_TEXT_MAX``."""
    return all(v is None or len(v) <= DEVICE_TEXT_MAX for v in values)


class DeviceInfo(Msg):
    device_id: Id
    kind: Id
    online: bool = True
    model: DeviceText | None = None
    fw: DeviceText | None = None
    last_seen: EpochMs | None = None
    # Why the agent refused what this device said about itself (e.g. "state_too_large");
    # the device is known, its refused state is not carried.
    refused: Id | None = None


class Birth(Msg):
    """Retained on ``state``: everything the cloud needs to rebuild its view of a store."""

    v: Literal[1] = 1
    online: Literal[True] = True
    bd_seq: int = Field(ge=0)
    ts: EpochMs
    agent_version: str = Field(max_length=AGENT_VERSION_MAX)
    devices: list[DeviceInfo] = Field(default_factory=list, max_length=BIRTH_MAX_DEVICES)
    shadow_version: int = Field(default=0, ge=0)
    outbox_depth: int = Field(default=0, ge=0)


class Death(Msg):
    """The Last Will on ``state`` (also published on a clean shutdown)."""

    v: Literal[1] = 1
    online: Literal[False] = False
    bd_seq: int = Field(ge=0)
    ts: EpochMs | None = None


State = Birth | Death


# ---- events --------------------------------------------------------------------


class Event(Msg):
    """A business event on ``evt/{kind}``. ``id`` is the idempotency key."""

    v: Literal[1] = 1
    id: Id
    kind: str
    store_id: Id
    device_id: Id | None = None
    seq: int = Field(ge=0)
    ts: EpochMs
    historical: bool = False
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {value!r}")
        return value


class DeviceEvent(Msg):
    """An event as a device publishes it on the store-local bus (``up/evt``).

    The agent adds ``store_id`` and the store ``seq`` and forwards it as an ``Event``.
    """

    v: Literal[1] = 1
    id: Id
    kind: str
    ts: EpochMs
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {value!r}")
        return value


# ---- telemetry ----------------------------------------------------------------------


class Sample(Msg):
    ts: EpochMs
    values: dict[str, Scalar] = Field(max_length=256)


class Telemetry(Msg):
    """Batched telemetry of one device (``tele/{device_kind}/{device_id}``)."""

    v: Literal[1] = 1
    device_id: Id
    device_kind: Id
    samples: list[Sample] = Field(min_length=1, max_length=1000)


# ---- shadows -------------------------------------------------------------------------


class ShadowDesired(Msg):
    v: Literal[1] = 1
    version: int = Field(ge=1)
    ts: EpochMs
    state: dict[str, Any]


class ShadowReported(Msg):
    v: Literal[1] = 1
    version: int = Field(ge=0, description="the desired version this state has applied")
    ts: EpochMs
    state: dict[str, Any]


# ---- commands --------------------------------------------------------------------------

AGENT_COMMANDS: frozenset[str] = frozenset({"ping", "get_diagnostics", "set_log_level", "rebirth"})

CommandStatus = Literal["ok", "error", "expired", "unknown_command", "rejected"]


class CommandSender(Msg):
    """Who sent a command (decision 0044): an API token's name and role, or the cloud
    itself (role ``system``, e.g. a rollout's offer)."""

    name: str = Field(min_length=1, max_length=SENDER_NAME_MAX)
    role: Id


class Command(Msg):
    v: Literal[1] = 1
    cmd_id: Id
    name: Id
    args: dict[str, Any] = Field(default_factory=dict)
    expires_at: EpochMs
    ts: EpochMs
    # Optional on the wire, so a box and a cloud of different releases still agree; a
    # sensitive command without a reason is refused by the box (protocols.commands).
    sender: CommandSender | None = None
    reason: str | None = Field(default=None, max_length=REASON_MAX)


class CommandResult(Msg):
    v: Literal[1] = 1
    cmd_id: Id
    target: Id = "agent"
    status: CommandStatus
    result: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    ts: EpochMs


class CloudReady(Msg):
    """On ``ready``: cloud ingest has applied the birth of session ``bd_seq``.

    A broker may lose a shared subscription across its own restart (Mosquitto 2.0
    does), and then drops what a store publishes until ingest subscribes again. A
    store therefore drains its outbox only once the cloud has answered this session's
    birth: the answer proves a subscriber exists again (decision 0012)."""

    v: Literal[1] = 1
    accepted: Literal[True] = True
    bd_seq: int = Field(ge=0)
    ts: EpochMs


class BirthRefused(Msg):
    """On ``ready`` instead of ``CloudReady``: ingest could not take the store's birth.

    Without it a store whose birth ingest rejects waits for a ``ready`` that never
    comes, and its outbox grows without end. ``reason`` is the ingest rejection reason
    (``too_large``, ``invalid_field``, ``unsupported_version``, ``db_rejected`` ...);
    ``bd_seq`` is the refused session when ingest could read it."""

    v: Literal[1] = 1
    accepted: Literal[False] = False
    bd_seq: int | None = Field(default=None, ge=0)
    reason: Id
    detail: str = Field(default="", max_length=512)
    ts: EpochMs


# Event ids one ``EventsAck`` names at most; ingest commits at most 500 messages a batch
# (cloud.ingest.worker.BATCH_MAX) and splits a larger set over several acks.
ACK_MAX_IDS = 1000


class EventsAck(Msg):
    """On ``ack``: cloud ingest has committed (or stored before, or refused for good)
    these events of the store, named by their ids within the store.

    A broker acknowledges a publish before it has saved it (Mosquitto persists at its
    autosave interval), so its PUBACK proves nothing about a crash. The store keeps an
    event in its outbox until this arrives, and sends what stays unacknowledged again
    (decision 0028); the cloud stores by id, so a second copy changes nothing."""

    v: Literal[1] = 1
    ids: list[Id] = Field(min_length=1, max_length=ACK_MAX_IDS)
    ts: EpochMs


# ---- fleet announcements ------------------------------------------------------------------


class RebirthRequest(Msg):
    v: Literal[1] = 1
    ts: EpochMs
    stores: list[Id] | None = None  # None = every store


# ---- store-local bus: device state ----------------------------------------------------------


class DeviceState(Msg):
    """A device's retained ``up/state`` on the local bus (its Last Will says offline)."""

    v: Literal[1] = 1
    online: bool
    model: str | None = None
    fw: str | None = None
    ts: EpochMs | None = None


# ---- promotions ------------------------------------------------------------------------------


class PromotionsAnnouncement(Msg):
    """Retained on ``sf/v1/{store_id}/content/promotions``: a new signed promotion
    snapshot for this store is ready at ``path`` (GET with the store's device token)."""

    v: Literal[1] = 1
    version: int = Field(ge=1)
    published_ms: EpochMs
    key_id: str = Field(min_length=1, max_length=64)
    path: str = Field(min_length=1, max_length=512)
    ruleset_hashes: dict[str, str] = Field(default_factory=dict, max_length=8)


# ---- price books ------------------------------------------------------------------------------


class PriceBookAnnouncement(Msg):
    """Retained on ``sf/v1/{store_id}/content/pricebook``: the store's price book is now
    ``version``. ``document`` is the signed price book itself when it fits in a message
    (the store verifies and installs it without a download); otherwise GET ``path``
    with the store's device token. Either way the Ed25519 signature is what is trusted,
    not the topic."""

    v: Literal[1] = 1
    version: int = Field(ge=1)
    published_ms: EpochMs
    key_id: str = Field(min_length=1, max_length=64)
    path: str = Field(min_length=1, max_length=512)
    document: dict[str, Any] | None = None


# ---- rollouts (decision 0040) -----------------------------------------------------------

# deferred: fetched, but the device is busy (mid-vend, mid-update); the install waits
# for it within the offer's deadline (decision 0043).
RolloutStep = Literal["fetching", "fetched", "deferred", "installing", "succeeded",
                      "failed"]
# A step's detail is a short reason ("bad_image: crc mismatch"), never a log.
ROLLOUT_DETAIL_MAX = 500


class RolloutStatus(Msg):
    """The ``data`` of a ``rollout_status`` event: one step of one install on the box.
    ``device`` is ``agent`` or the device id the artifact is for."""

    v: Literal[1] = 1
    rollout_id: Id
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    device: Id
    step: RolloutStep
    detail: str = Field(default="", max_length=ROLLOUT_DETAIL_MAX)
