"""Desired-shadow keys a store box acts on: the one table the cloud and the agent share.

``shadow/{target}/desired`` carries a JSON object. For ``target == "agent"`` the agent
applies the keys below (``edge_agent.shadow``; the composition root gives each one its
check and apply, and refuses to start with a key that is not declared here) and keeps
any other key as it is. For a device id, nothing applies a desired state yet: driver
modules take their settings as commands (``esl_price_book``, ``audio_schedule``, ...),
so the API refuses a device-level desired key that no driver declares here, instead of
storing and publishing state that the agent would drop.

When a driver family starts handling desired state, declare its keys here with
``target="device"`` and the family, and the API accepts them from then on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

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
    # No device-level keys: no driver applies desired state yet.
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
