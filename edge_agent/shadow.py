"""The agent's shadow: apply ``shadow/agent/desired``, persist it, report what was applied.

The desired state is retained, so it arrives on every connect:

- ``version`` below the applied one: ignored (an old retained copy).
- ``version`` equal to the applied one: reported again (cheap, and heals a lost report).
- a newer ``version``: every supported key is validated first; if all are valid they
  are applied, the state (unknown keys kept as they are) is persisted and reported with
  ``ShadowReported(version=...)``. One invalid value rejects the whole version (counted).

Supported keys are a table of ``ShadowKey`` (name, apply function); the composition root
builds it, so this module knows no other part of the agent. Every name must be declared
in ``protocols.shadow_keys`` (the table the cloud's API checks desired states against),
so the two cannot drift: an undeclared key is refused when the shadow is built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge_agent.errors import ConfigError
from edge_agent.metrics import AgentMetrics
from edge_agent.storage import KvStore
from edge_agent.uplink.publisher import Publish
from protocols import topics
from protocols.clock import Clock
from protocols.codec import decode, encode
from protocols.errors import DecodeError
from protocols.messages import ShadowDesired, ShadowReported
from protocols.shadow_keys import AGENT_KEYS

logger = logging.getLogger(__name__)

_KV_KEY = "shadow.agent"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class ShadowKey:
    """A supported desired key: ``check`` raises ValueError on a bad value, ``apply`` applies."""

    name: str
    check: Callable[[Any], None]
    apply: Callable[[Any], None]


def check_log_level(value: Any) -> None:
    if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")


def check_interval(value: Any) -> None:
    # bool is an int in Python; a desired `true` is a mistake, not 1 second.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 3600:
        raise ValueError("telemetry_interval_s must be a number in [0.1, 3600]")


def check_devices(value: Any) -> None:
    """``{device_id: {family, model?, options?}}``: the drivers' desired devices."""
    if not isinstance(value, dict):
        raise ValueError("devices must be an object keyed by device id")
    for device_id, doc in value.items():
        if not isinstance(doc, dict) or not isinstance(doc.get("family"), str):
            raise ValueError(f"devices.{device_id} must be an object with a family")
        if doc.get("model") is not None and not isinstance(doc["model"], str):
            raise ValueError(f"devices.{device_id}.model must be a string")
        if not isinstance(doc.get("options", {}), dict):
            raise ValueError(f"devices.{device_id}.options must be an object")


class AgentShadow:
    def __init__(
        self,
        kv: KvStore,
        *,
        store_id: str,
        clock: Clock,
        metrics: AgentMetrics,
        keys: Mapping[str, ShadowKey],
        extra_reported: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        # extra_reported: live state reported beside the applied desired keys
        # (e.g. ``devices_health`` from the drivers); never persisted.
        self._extra_reported = extra_reported
        self._kv = kv
        self._store_id = store_id
        self._clock = clock
        self._metrics = metrics
        if undeclared := sorted(set(keys) - AGENT_KEYS):
            raise ConfigError("shadow keys", f"{', '.join(undeclared)} not declared in "
                              "protocols.shadow_keys.DESIRED_KEYS")
        self._keys = dict(keys)
        self.version = 0
        self.state: dict[str, Any] = {}

    @property
    def supported(self) -> frozenset[str]:
        """The desired keys this shadow applies (a subset of ``AGENT_KEYS``)."""
        return frozenset(self._keys)

    async def load(self) -> None:
        """Re-apply the persisted state (so e.g. the log level survives a restart)."""
        saved = await self._kv.get(_KV_KEY)
        if not isinstance(saved, dict):
            return
        self.version = int(saved.get("version", 0))
        self.state = dict(saved.get("state", {}))
        try:
            self._apply(self.state)
        except ValueError as err:  # a stored value that a newer agent no longer accepts
            logger.warning("persisted shadow v%d not re-applied: %s", self.version, err)
        self._metrics.shadow_version.set(self.version)

    async def handle_desired(self, payload: bytes, link: Publish) -> None:
        try:
            desired = decode(payload, ShadowDesired)
        except DecodeError as err:
            self._reject(err.reason, str(err))
            return
        if desired.version < self.version:
            logger.debug("shadow v%d older than applied v%d", desired.version, self.version)
            return
        if desired.version > self.version:
            try:
                self._apply(desired.state)
            except ValueError as err:
                self._reject("invalid_shadow", f"v{desired.version}: {err}")
                return
            self.version, self.state = desired.version, dict(desired.state)
            await self._kv.set(_KV_KEY, {"version": self.version, "state": self.state})
            self._metrics.shadow_version.set(self.version)
            logger.info("applied shadow v%d: %s", self.version, sorted(self.state))
        await self.report(link)

    async def report(self, link: Publish) -> None:
        state = dict(self.state)
        if self._extra_reported is not None:
            state.update(self._extra_reported())
        reported = ShadowReported(version=self.version, ts=self._clock.now_ms(), state=state)
        await link.publish(topics.shadow_reported(self._store_id), encode(reported), qos=1)

    def _apply(self, state: Mapping[str, Any]) -> None:
        supported = [
            (self._keys[name], value) for name, value in state.items() if name in self._keys
        ]
        for key, value in supported:  # all checks before any apply: all or nothing
            key.check(value)
        for key, value in supported:
            key.apply(value)

    def _reject(self, reason: str, detail: str) -> None:
        self._metrics.bad_payloads.labels(source="cloud", reason=reason).inc()
        logger.warning("shadow desired rejected: %s", detail)
