"""Which coupon-trigger rules the store runs: three sources, one winner.

=====================  ===============================================================
desired shadow         ``trigger_rules`` set on this store's agent shadow: a per-store
                       override (a list replaces the rules whole, ``[]`` turns triggers
                       off here; ``null`` removes the override)
promotion snapshot     the ``trigger_rules`` of the installed signed promotion document
                       (HQ attaches rules to coupon promotions; versioned with them)
config / bundle        ``[in_aisle] trigger_rules`` plus the ``retail_data`` bundle's:
                       provisioning, and the fallback until a snapshot carries rules
=====================  ===============================================================

The first present wins, whole (rules are not merged by id: what runs is exactly one
source's set, so a reader of the shadow or the snapshot knows what the store does). A
snapshot "carries rules" once HQ published any rule at all; from then on its set, even
empty, replaces the configured one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from edge_agent.pos.cache import CacheError, PromotionCache, verify
from protocols.errors import DecodeError
from protocols.triggers import TriggerRule, parse_rules

logger = logging.getLogger(__name__)


class RuleSources:
    def __init__(self, config: tuple[TriggerRule, ...]) -> None:
        self.config = config
        self.snapshot: tuple[TriggerRule, ...] | None = None
        self.snapshot_version: int | None = None
        self.shadow: tuple[TriggerRule, ...] | None = None

    @property
    def source(self) -> str:
        if self.shadow is not None:
            return "shadow"
        return "snapshot" if self.snapshot is not None else "config"

    def effective(self) -> tuple[TriggerRule, ...]:
        if self.shadow is not None:
            return self.shadow
        return self.snapshot if self.snapshot is not None else self.config


async def installed_rules(cache: PromotionCache
                          ) -> tuple[int, tuple[TriggerRule, ...] | None] | None:
    """(version, rules) of the till's installed promotion document; rules None when it
    carries none; None when nothing usable is installed. The cached file is read and its
    signature verified again (the disk is not trusted), as the till's cache does."""
    version = cache.version
    if version is None:
        return None

    def read() -> Any:
        return json.loads(cache.path.read_text(encoding="utf-8"))

    try:
        payload = verify(await asyncio.to_thread(read), cache.keys)
    except (OSError, ValueError, CacheError) as err:
        logger.warning("installed promotions %s unreadable for trigger rules: %s",
                       cache.path, err)
        return None
    if payload.get("version") != version or "trigger_rules" not in payload:
        return (version, None) if payload.get("version") == version else None
    try:
        return version, parse_rules(payload["trigger_rules"])
    except DecodeError as err:  # a newer cloud's rule this agent cannot read: keep ours
        logger.error("trigger rules of promotions v%s refused: %s", version, err)
        return version, None
