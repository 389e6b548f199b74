"""Idempotency keys on command creation (decision 0061).

A client that sends ``Idempotency-Key: <key>`` with ``POST /stores/{s}/commands`` or
``POST /fleet/commands`` and retries after a timeout or a dropped connection gets the
command (or fan-out) the first request made, not a second one: the key is stored with the
row under a unique constraint on ``(sender, idempotency_key)``, so two racing requests
cannot both insert, and the loser reads the winner's row. Keys are per sender (the token's
name): another token's key reaches nothing. The same key with a different request (another
command, target, arguments or selection) is a 422 ``idempotency_key_reused`` rather than
a silent answer for the wrong request.

A retry does not publish again: it answers what the first request stored, including a
command the broker did not take (``undeliverable``); sending that again takes a new key.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.models import Command
from cloud.errors import CloudError

KEY_MAX = 128  # a UUID is 36; room for a client's own scheme (job name + attempt)
# Printable ASCII without spaces: it goes into logs and problem details as it is.
_KEY = re.compile(rf"[!-~]{{1,{KEY_MAX}}}")


class CommandError(CloudError):
    """A command request that cannot be carried out (``status``: the HTTP status,
    ``reason``: the problem's reason and metric label)."""

    reason = "command"

    def __init__(self, status: int, detail: str, *, reason: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.reason = status, detail, reason


def valid_key(key: str | None) -> str | None:
    """The key, or None for none; a 422 ``CommandError`` for one we would not store."""
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise CommandError(422, f"Idempotency-Key: 1-{KEY_MAX} printable ASCII characters "
                           "without spaces (a UUID does)", reason="invalid_idempotency_key")
    return key


def reused(key: str, what: str) -> CommandError:
    return CommandError(422, f"Idempotency-Key {key!r} was used for another request "
                        f"({what}); use a new key for a new request",
                        reason="idempotency_key_reused")


def find_command(session: Session, sender: str, key: str) -> Command | None:
    return session.scalars(select(Command).where(
        Command.sender == sender, Command.idempotency_key == key)).one_or_none()


def check_same_command(found: Command, key: str, *, store_id: str, target: str, name: str,
                       args: dict[str, Any]) -> Command:
    """``found`` when it is the command this request asks for, else ``reused``."""
    if (found.store_id, found.target, found.name, found.args) != (store_id, target, name,
                                                                   args):
        raise reused(key, f"{found.name} to {found.store_id}/{found.target}")
    return found
