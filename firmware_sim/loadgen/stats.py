"""What a fleet process counts: events made, sent, acknowledged; sessions; commands
answered; and every error by reason (``errors``), for its status file and the bench."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class FleetStats:
    stores: int = 0
    connected: int = 0  # stores with a session now
    ready: int = 0  # of those, answered by the cloud (set by the fleet when it looks)
    connects: int = 0  # sessions made, over the run
    produced: Counter[str] = field(default_factory=Counter)  # events made, by kind
    published: int = 0  # event publishes the broker acknowledged (resends included)
    acked: int = 0  # events that left an outbox (the cloud's ack, or PUBACK without one)
    telemetry: int = 0
    commands_answered: int = 0
    storms: int = 0
    outbox_depth: int = 0  # events in the outboxes (set by the fleet when it looks)
    errors: Counter[str] = field(default_factory=Counter)  # by reason, never dropped

    def count(self, reason: str) -> None:
        """An error or an abnormal end, by reason (each is also logged where it happens)."""
        self.errors[reason] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"stores": self.stores, "connected": self.connected, "ready": self.ready,
                "connects": self.connects, "produced": sum(self.produced.values()),
                "produced_by_kind": dict(self.produced), "published": self.published,
                "acked": self.acked, "telemetry": self.telemetry,
                "commands_answered": self.commands_answered, "storms": self.storms,
                "outbox_depth": self.outbox_depth, "errors": dict(self.errors)}
