"""Desired-shadow keys a store box acts on: the one table the cloud and the agent share.

``shadow/{target}/desired`` carries a JSON object. For ``target == "agent"`` the agent
applies the keys below (``edge_agent.shadow``; the composition root gives each one its
check and apply, and refuses to start with a key that is not declared here) and keeps
any other key as it is. For a device id, the kernel hands each key to the device's
running driver, which declares it with ``@desired(key, Model)`` (decision 0037); a
driver's key must be declared here with ``target="device"`` and its family (a test
checks both tables agree), so the API refuses a key that no driver applies instead of
storing and publishing state that the agent would drop.

A device's reported state is a ``DeviceReported`` document; its desired state is capped
(``DEVICE_DESIRED_MAX_BYTES``, ``DESIRED_MAX_DEPTH``) by the API and the agent alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AGENT = "agent"


@dataclass(frozen=True, slots=True)
class DesiredKey:
    """A desired-state key that something in the store box applies."""

    name: str
    target: Literal["agent", "device"]
    summary: str
    family: str | None = None
    """For ``target == "device"``: the driver family that applies it."""


DESIRED_KEYS: tuple[DesiredKey, ...] = (
    DesiredKey("log_level", "agent", "level of the agent's own loggers (DEBUG ... CRITICAL)"),
    DesiredKey("telemetry_interval_s", "agent", "seconds between telemetry samples"),
    DesiredKey("devices", "agent", "{device_id: {family, model?, options?}}: the devices "
               "the drivers run, besides the configured ones"),
    DesiredKey("trigger_rules", "agent", "in-aisle coupon trigger rules "
               "(protocols.triggers.TriggerRule documents)"),
    DesiredKey("esl_price_book", "device", "the access point's price book "
               "(protocols.esl.PriceBook: version, currency, items)", family="esl"),
    DesiredKey("audio_schedule", "device", "the unit's schedule "
               "(protocols.audio.AudioSchedule)", family="audio"),
)

AGENT_KEYS: frozenset[str] = frozenset(k.name for k in DESIRED_KEYS if k.target == "agent")
DEVICE_KEYS: frozenset[str] = frozenset(k.name for k in DESIRED_KEYS if k.target == "device")


def undeclared(target: str, keys: Iterable[str]) -> list[str]:
    """The keys of a desired state for ``target`` that nothing would apply, sorted.

    The agent target keeps unknown keys (it reports them back unchanged), so none is
    refused there; for a device every key must be a declared device-level key.
    """
    if target == AGENT:
        return []
    return sorted(set(keys) - DEVICE_KEYS)


def family_keys(family: str) -> frozenset[str]:
    """The device-level keys declared for a driver family."""
    return frozenset(k.name for k in DESIRED_KEYS if k.target == "device" and k.family == family)


# A device's desired document travels in one MQTT message (256 KiB cap, protocols.codec)
# and comes back in the reported one beside a little bookkeeping: half leaves room.
DEVICE_DESIRED_MAX_BYTES = 128 * 1024
# The deepest declared value (a schedule's dayparts' playlists) is 5 levels down;
# 8 leaves room and stops a pathological document before any code walks it.
DESIRED_MAX_DEPTH = 8


def encoded_size(state: Any) -> int:
    """Bytes of ``state`` as compact JSON (what the MQTT message carries)."""
    return len(json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode())


def depth(value: Any) -> int:
    """Nesting depth of a JSON value: a scalar is 0, ``{"a": 1}`` is 1. Iterative, so a
    deep document cannot exhaust the stack while it is measured."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


class DeviceReported(BaseModel):
    """``shadow/{device_id}/reported``'s ``state``: what the device's driver applied.

    ``applied`` holds each desired key's value as applied (so equal means converged);
    ``delta`` the desired keys not applied (unsupported, rejected or no driver yet);
    ``unsupported`` the keys the device's driver does not declare; ``rejected`` key ->
    why its value was refused; ``error`` why nothing was applied (e.g. no such device).
    """

    model_config = ConfigDict(extra="forbid")

    applied: dict[str, Any] = Field(default_factory=dict)
    delta: list[str] = Field(default_factory=list)
    unsupported: list[str] = Field(default_factory=list)
    rejected: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
