"""Downlink routing: every message from the cloud goes where its topic and the modules'
declarations say (decision 0030), never through an if-chain of features.

    sf/v1/{store}/shadow/agent/desired   -> the agent's shadow (kernel and module keys)
    sf/v1/{store}/shadow/{device}/desired -> the device's driver (decision 0037)
    sf/v1/{store}/cmd/{target}           -> a module's command target (e.g. ``orders``),
                                            else the agent's commands / a device's
    sf/v1/{store}/content/{kind}         -> the module that handles ``kind``
    sf/v1/_fleet/rebirth                 -> a new birth, if it names this store
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from edge_agent.commands import CommandHandler
from edge_agent.kernel.device_shadow import DeviceShadows
from edge_agent.kernel.module import Module
from edge_agent.metrics import AgentMetrics
from edge_agent.shadow import AgentShadow
from edge_agent.uplink.link import UplinkLink
from protocols import topics
from protocols.errors import ProtocolError
from protocols.messages import RebirthRequest
from storefleet.mqtt.payloads import decode_or_count

logger = logging.getLogger(__name__)


class Downlink:
    def __init__(
        self,
        *,
        store_id: str,
        shadow: AgentShadow,
        device_shadows: DeviceShadows,
        commands: CommandHandler,
        modules: Iterable[Module],
        metrics: AgentMetrics,
        rebirth: Callable[[], Awaitable[None]],
    ) -> None:
        self._store_id = store_id
        self._shadow = shadow
        self._device_shadows = device_shadows
        self._commands = commands
        self._metrics = metrics
        self._rebirth = rebirth
        modules = list(modules)
        self.targets = {t: h for m in modules for t, h in m.command_targets().items()}
        self.content = {k: h for m in modules for k, h in m.content_handlers().items()}

    async def __call__(self, link: UplinkLink, topic: str, payload: bytes) -> None:
        if topic.startswith(f"{topics.PREFIX}/{topics.FLEET}/"):
            await self._fleet(topic, payload)
            return
        try:
            where = topics.parse_uplink(topic)
        except ProtocolError as err:
            self._metrics.bad_payloads.labels(source="cloud", reason="bad_topic").inc()
            logger.warning("downlink on unexpected topic: %s", err)
            return
        target = where.target or ""
        if where.channel == "shadow" and where.direction == "desired":
            if target == "agent":
                await self._shadow.handle_desired(payload, link)
            else:
                await self._device_shadows.handle_desired(target, payload, link)
        elif where.channel == "cmd" and (handler := self.targets.get(target)) is not None:
            await handler(payload)
        elif where.channel == "cmd":
            await self._commands.handle(payload, target=target, link=link)
        elif where.channel == "content":
            if (handler := self.content.get(where.kind or "")) is not None:
                await handler(payload)
            else:
                logger.info("content %s (%d bytes): no module handles it", where.kind,
                            len(payload))

    async def _fleet(self, topic: str, payload: bytes) -> None:
        if topic != topics.fleet("rebirth"):
            logger.debug("fleet announcement %s ignored", topic)
            return
        request = decode_or_count(payload, RebirthRequest, bad=self._metrics.bad_payloads,
                                  source="cloud", what="rebirth request", log=logger)
        if request is None:
            return
        if request.stores is None or self._store_id in request.stores:
            await self._rebirth()
