"""The MQTT topic namespace (docs/architecture.md#how-they-talk).

Uplink (store box <-> cloud), prefix ``sf/v1/{store_id}/``:

=================================  ====  ===============================
``state``                          up    birth / Last Will death, retained
``evt/{kind}``                     up    business events, QoS 1
``tele/{device_kind}/{device_id}`` up    telemetry, QoS 0
``shadow/{target}/reported``       up    reported state, QoS 1
``shadow/{target}/desired``        down  desired state, QoS 1, retained
``cmd/{target}``                   down  commands, QoS 1
``cmd-res``                        up    command results, QoS 1
``cmd/orders``                     down  online orders (``protocols.orders``), QoS 1
``content/manifest``               down  signed content manifest, retained
``content/promotions``             down  promotion snapshot announcement, retained
``content/pricebook``              down  signed price book (or where to get it), retained
``ready``                          down  ingest's answer to a birth (``CloudReady`` or
                                         ``BirthRefused``), QoS 1
``ack``                            down  ingest's acknowledgement of events it
                                         committed (``EventsAck``), QoS 1
``sf/v1/_fleet/{what}``            down  fleet-wide announcements
=================================  ====  ===============================

Store-local bus: ``store/{device_kind}/{device_id}/{up|down}/{type}``.

Builders return strings; parsers return frozen dataclasses or raise
``TopicError``. Every level built from an id is checked against the one id rule
(``protocols.ids``), so a store id can never contain ``/``, ``+`` or ``#`` and escape
its namespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from protocols.errors import TopicError
from protocols.ids import check_id, valid_id  # the id rule; importable from here too

PREFIX = "sf/v1"
FLEET = "_fleet"
LOCAL_PREFIX = "store"

UplinkChannel = Literal[
    "state", "evt", "tele", "shadow", "cmd", "cmd-res", "content", "ready", "ack"
]


# ---- uplink builders -------------------------------------------------------


def store_root(store_id: str) -> str:
    return f"{PREFIX}/{check_id(store_id, 'store id')}"


def state(store_id: str) -> str:
    return f"{store_root(store_id)}/state"


def evt(store_id: str, kind: str) -> str:
    return f"{store_root(store_id)}/evt/{check_id(kind, 'event kind')}"


def tele(store_id: str, device_kind: str, device_id: str) -> str:
    return (
        f"{store_root(store_id)}/tele/{check_id(device_kind, 'device kind')}/"
        f"{check_id(device_id, 'device id')}"
    )


def shadow_reported(store_id: str, target: str = "agent") -> str:
    return f"{store_root(store_id)}/shadow/{check_id(target, 'shadow target')}/reported"


def shadow_desired(store_id: str, target: str = "agent") -> str:
    return f"{store_root(store_id)}/shadow/{check_id(target, 'shadow target')}/desired"


def cmd(store_id: str, target: str = "agent") -> str:
    return f"{store_root(store_id)}/cmd/{check_id(target, 'command target')}"


def cmd_res(store_id: str) -> str:
    return f"{store_root(store_id)}/cmd-res"


def ready(store_id: str) -> str:
    """Cloud -> store: an ingest worker applied this session's birth, so it is
    subscribed and the store may drain its outbox (see ``messages.CloudReady``); or
    it could not take the birth, and says why (``messages.BirthRefused``)."""
    return f"{store_root(store_id)}/ready"


def ack(store_id: str) -> str:
    """Cloud -> store: ingest committed these events of the store (``messages.EventsAck``);
    only now may the store delete them from its outbox (decision 0028)."""
    return f"{store_root(store_id)}/ack"


def content_manifest(store_id: str) -> str:
    return f"{store_root(store_id)}/content/manifest"


def content_promotions(store_id: str) -> str:
    return f"{store_root(store_id)}/content/promotions"


def content_pricebook(store_id: str) -> str:
    """Cloud -> store, retained: ``messages.PriceBookAnnouncement``."""
    return f"{store_root(store_id)}/content/pricebook"


# Reserved command target of online orders (``protocols.orders``): the store box's order
# handler, never a device.
ORDERS_TARGET = "orders"


def orders(store_id: str) -> str:
    """Where the cloud dispatches online orders to a store (``protocols.orders``)."""
    return cmd(store_id, ORDERS_TARGET)


def fleet(what: str) -> str:
    return f"{PREFIX}/{FLEET}/{check_id(what, 'fleet topic')}"


# ---- subscription filters ---------------------------------------------------


def store_downlink_filters(store_id: str) -> list[str]:
    """What a store box subscribes to on the uplink broker."""
    root = store_root(store_id)
    return [
        f"{root}/shadow/+/desired",
        f"{root}/cmd/+",
        f"{root}/content/+",  # manifest, promotions announcements ...
        f"{root}/ready",
        f"{root}/ack",
        f"{PREFIX}/{FLEET}/#",
    ]


def cloud_uplink_filters() -> list[str]:
    """What cloud ingest subscribes to (all stores, upward channels)."""
    return [
        f"{PREFIX}/+/state",
        f"{PREFIX}/+/evt/+",
        f"{PREFIX}/+/tele/+/+",
        f"{PREFIX}/+/shadow/+/reported",
        f"{PREFIX}/+/cmd-res",
    ]


def shared(filter_: str, group: str) -> str:
    """A shared subscription filter (``$share/{group}/{filter}``), MQTT 5 / Mosquitto."""
    return f"$share/{check_id(group, 'share group')}/{filter_}"


# ---- uplink parser ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UplinkTopic:
    store_id: str
    channel: UplinkChannel
    kind: str | None = None  # event kind (evt) or device kind (tele)
    target: str | None = None  # device id (tele), shadow target, command target
    direction: Literal["reported", "desired"] | None = None


def parse_uplink(topic: str) -> UplinkTopic:
    parts = topic.split("/")
    if len(parts) < 3 or f"{parts[0]}/{parts[1]}" != PREFIX:
        raise TopicError(topic, f"not under {PREFIX}/")
    store_id, rest = parts[2], parts[3:]
    if store_id == FLEET or not valid_id(store_id):
        raise TopicError(topic, "bad store id")
    if not rest:
        raise TopicError(topic, "no channel")
    head = rest[0]
    if not all(valid_id(p) for p in rest[1:]):
        raise TopicError(topic, "bad id in topic")
    match head, len(rest):
        case "state", 1:
            return UplinkTopic(store_id, "state")
        case "evt", 2:
            return UplinkTopic(store_id, "evt", kind=rest[1])
        case "tele", 3:
            return UplinkTopic(store_id, "tele", kind=rest[1], target=rest[2])
        case "shadow", 3 if rest[2] in ("reported", "desired"):
            direction: Literal["reported", "desired"] = (
                "reported" if rest[2] == "reported" else "desired"
            )
            return UplinkTopic(store_id, "shadow", target=rest[1], direction=direction)
        case "cmd", 2:
            return UplinkTopic(store_id, "cmd", target=rest[1])
        case "cmd-res", 1:
            return UplinkTopic(store_id, "cmd-res")
        case "ready", 1:
            return UplinkTopic(store_id, "ready")
        case "ack", 1:
            return UplinkTopic(store_id, "ack")
        case "content", 2:
            return UplinkTopic(store_id, "content", kind=rest[1])
    raise TopicError(topic, f"unknown channel {head!r}")


# ---- store-local bus ----------------------------------------------------------

LocalDirection = Literal["up", "down"]


def local(device_kind: str, device_id: str, direction: LocalDirection, type_: str) -> str:
    return (
        f"{LOCAL_PREFIX}/{check_id(device_kind, 'device kind')}/"
        f"{check_id(device_id, 'device id')}/{direction}/{check_id(type_, 'message type')}"
    )


def local_up_filter() -> str:
    """What the agent subscribes to on the store-local bus."""
    return f"{LOCAL_PREFIX}/+/+/up/#"


@dataclass(frozen=True, slots=True)
class LocalTopic:
    device_kind: str
    device_id: str
    direction: LocalDirection
    type: str
    rest: tuple[str, ...] = ()


def parse_local(topic: str) -> LocalTopic:
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] != LOCAL_PREFIX:
        raise TopicError(topic, f"not a {LOCAL_PREFIX}/<kind>/<id>/<up|down>/<type> topic")
    _, kind, device_id, direction, type_, *rest = parts
    if direction not in ("up", "down"):
        raise TopicError(topic, "direction must be up or down")
    if not all(valid_id(p) for p in (kind, device_id, type_, *rest)):
        raise TopicError(topic, "bad id in topic")
    return LocalTopic(kind, device_id, "up" if direction == "up" else "down", type_, tuple(rest))
