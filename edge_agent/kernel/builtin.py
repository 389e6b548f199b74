"""The kernel's own commands and desired-shadow keys (modules declare theirs)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge_agent.commands import CommandSpec, NoArgs
from edge_agent.kernel.logring import MAX_LINES, LogRing
from edge_agent.shadow import LOG_LEVELS, ShadowKey, check_devices, check_interval, check_log_level

PACKAGE_LOGGER = "edge_agent"  # set_log_level / shadow log_level act on our own loggers


class LogLevelArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: str

    @field_validator("level")
    @classmethod
    def _known(cls, value: str) -> str:
        check_log_level(value)
        return value


class GetLogsArgs(BaseModel):
    """``get_logs``: lines after sequence ``since``, at ``level`` or above, ``limit`` newest."""

    model_config = ConfigDict(extra="forbid")

    since: int = Field(default=0, ge=0)
    level: str = "DEBUG"
    limit: int = Field(default=100, ge=1, le=MAX_LINES)

    @field_validator("level")
    @classmethod
    def _known(cls, value: str) -> str:
        check_log_level(value)
        return value.upper()


def set_log_level(value: Any) -> None:
    level = str(value).upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"bad log level {value!r}")
    logging.getLogger(PACKAGE_LOGGER).setLevel(level)


def kernel_commands(
    *,
    now_ms: Callable[[], int],
    diagnostics: Callable[[], dict[str, Any]],
    rebirth: Callable[[], Awaitable[int]],
    logs: LogRing,
) -> dict[str, CommandSpec[Any]]:
    """``ping``, ``get_diagnostics``, ``set_log_level``, ``rebirth``, ``get_logs``."""

    async def ping(_args: NoArgs) -> dict[str, Any]:
        return {"pong": True, "ts": now_ms()}

    async def get_diagnostics(_args: NoArgs) -> dict[str, Any]:
        return diagnostics()

    async def log_level(args: LogLevelArgs) -> dict[str, Any]:
        set_log_level(args.level)
        return {"level": args.level.upper()}

    async def new_birth(_args: NoArgs) -> dict[str, Any]:
        return {"bd_seq": await rebirth()}

    async def get_logs(args: GetLogsArgs) -> dict[str, Any]:
        return logs.lines(since=args.since, level=logging.getLevelNamesMapping()[args.level],
                          limit=args.limit)

    return {"ping": CommandSpec(NoArgs, ping),
            "get_diagnostics": CommandSpec(NoArgs, get_diagnostics),
            "set_log_level": CommandSpec(LogLevelArgs, log_level),
            "rebirth": CommandSpec(NoArgs, new_birth),
            "get_logs": CommandSpec(GetLogsArgs, get_logs)}


def kernel_shadow_keys(
    *, set_telemetry_interval: Callable[[float], None], set_devices: Callable[[Any], None],
) -> list[ShadowKey]:
    """``log_level``, ``telemetry_interval_s``, ``devices``."""
    return [ShadowKey("log_level", check_log_level, set_log_level),
            ShadowKey("telemetry_interval_s", check_interval,
                      lambda value: set_telemetry_interval(float(value))),
            ShadowKey("devices", check_devices, set_devices)]
