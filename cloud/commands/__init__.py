"""Commands to many stores at once: fleet-wide commands (fan-outs) and idempotency keys
(decision 0061). The single-store command route is ``cloud/api/routes/commands.py``."""

from cloud.commands.fanout import (
    Created,
    FanoutCounts,
    FanoutCreate,
    FanoutPublic,
    Sender,
    create_fanout,
    failures_page,
    mark_undeliverable,
    progress,
)
from cloud.commands.idempotency import CommandError, valid_key

__all__ = [
    "CommandError",
    "Created",
    "FanoutCounts",
    "FanoutCreate",
    "FanoutPublic",
    "Sender",
    "create_fanout",
    "failures_page",
    "mark_undeliverable",
    "progress",
    "valid_key",
]
