"""Cloud commands for the agent (``cmd/agent``), results on ``cmd-res``.

Each command runs at most once: its ``cmd_id`` is recorded (persisted, bounded) before
it runs, so a redelivery after a reconnect or restart is ignored. An expired command
(``now > expires_at``) is answered ``expired`` and not run.

Handlers are a table name -> ``CommandSpec`` (an argument model and an async function of
it returning a result dict), declared by the kernel and the modules: arguments that do
not fit the model are ``rejected`` with the field named; ``CommandError`` from a handler
becomes status ``error``, and so does any other exception (logged with its traceback).
Commands for another target (``cmd/{device_id}``) go to ``device_handler``
(target, name, args, reason=) when one is given; ``CommandRefused`` becomes ``rejected``
(a driver refuses a sensitive command without a reason: decision 0044). Who sent each
command and why is logged beside its result, so ``fleet logs`` shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from edge_agent.errors import AgentError
from edge_agent.metrics import AgentMetrics
from edge_agent.storage import KvStore
from edge_agent.uplink.publisher import Publish
from protocols import topics
from protocols.clock import Clock
from protocols.codec import encode
from protocols.messages import Command, CommandResult, CommandStatus
from storefleet.mqtt.payloads import decode_or_count

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
A = TypeVar("A", bound=BaseModel)


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class CommandSpec(Generic[A]):
    """A command: its arguments' model (unknown fields refused) and what runs it."""

    args: type[A]
    run: Callable[[A], Awaitable[dict[str, Any]]]


def refusal(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "args"
    return f"bad argument {where!r}: {first['msg']}"


class DeviceHandler(Protocol):
    """Runs command ``name`` on device ``target`` (``reason``: the sender's, or None)."""

    async def __call__(self, target: str, name: str, args: dict[str, Any], /, *,
                       reason: str | None = None) -> dict[str, Any]: ...


class CommandError(AgentError):
    """A command's arguments or execution failed; ``detail`` goes back to the cloud."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CommandRefused(CommandError):
    """No such target, or a command/arguments the target refuses: status ``rejected``."""


class CommandHandler:
    def __init__(
        self,
        kv: KvStore,
        *,
        store_id: str,
        clock: Clock,
        metrics: AgentMetrics,
        handlers: Mapping[str, CommandSpec[Any]],
        device_handler: DeviceHandler | None = None,
    ) -> None:
        self._device_handler = device_handler
        self._kv = kv
        self._store_id = store_id
        self._clock = clock
        self._metrics = metrics
        self._handlers = dict(handlers)

    async def handle(self, payload: bytes, *, target: str, link: Publish) -> None:
        command = decode_or_count(payload, Command, bad=self._metrics.bad_payloads,
                                  source="cloud", what="command payload", log=logger)
        if command is None:
            return
        now = self._clock.now_ms()
        if not await self._kv.remember_command(command.cmd_id, now_ms=now):
            self._metrics.commands.labels(name=command.name, status="duplicate").inc()
            logger.info("command %s (%s) already seen; ignored", command.cmd_id, command.name)
            return
        status, result, error = await self._run(command, target=target, now_ms=now)
        self._metrics.commands.labels(name=command.name, status=status).inc()
        logger.info("command %s %s -> %s (%s)%s", command.name, command.cmd_id, status,
                    _who(command), f": {error}" if error else "")
        reply = CommandResult(
            cmd_id=command.cmd_id,
            target=target,
            status=status,
            result=result,
            error=error,
            ts=self._clock.now_ms(),
        )
        await link.publish(topics.cmd_res(self._store_id), encode(reply), qos=1)

    async def _run(
        self, command: Command, *, target: str, now_ms: int
    ) -> tuple[CommandStatus, dict[str, Any], str | None]:
        if target != "agent" and self._device_handler is None:
            return "rejected", {}, f"no command target {target!r} on this agent"
        if now_ms > command.expires_at:
            return "expired", {}, f"expired {now_ms - command.expires_at} ms ago"
        if target != "agent" and self._device_handler is not None:
            try:
                result = await self._device_handler(target, command.name,
                                                    dict(command.args), reason=command.reason)
                return "ok", result, None
            except CommandRefused as err:
                return "rejected", {}, err.detail
            except CommandError as err:
                return "error", {}, err.detail
        spec = self._handlers.get(command.name)
        if spec is None:
            return "unknown_command", {}, f"unknown command {command.name!r}"
        try:
            args = spec.args.model_validate(dict(command.args))
        except ValidationError as err:
            return "rejected", {}, refusal(err)
        try:
            return "ok", await spec.run(args), None
        except CommandError as err:
            return "error", {}, err.detail
        except Exception as err:  # the isolation boundary of one command
            logger.exception("command %s %s failed", command.name, command.cmd_id)
            return "error", {}, f"{type(err).__name__}: {err}"


def _who(command: Command) -> str:
    """``sent by NAME (ROLE), reason: ...`` for the log line of a command's result."""
    sender = command.sender
    who = "sent by an unknown sender" if sender is None else (
        f"sent by {sender.name} ({sender.role})")
    return who if command.reason is None else f"{who}, reason: {command.reason!r}"
