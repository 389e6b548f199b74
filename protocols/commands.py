"""Sensitive commands and command senders: the one table the cloud and the box share.

Every command carries who sent it (``CommandSender``: a token's name and role, or the
cloud itself for rollout offers) and, for a sensitive command, why. A command is
sensitive when it opens something that holds cash or stock; its driver declares it with
``@command(name, Args, sensitive=True)`` (decision 0044) and it must be listed here with
its family (a test checks both agree), so that the API can refuse it without a reason,
or from a role the cloud's configuration does not allow, without importing the agent.
The box refuses one that arrives without a reason too (defence in depth).
"""

from __future__ import annotations

from dataclasses import dataclass

# The role recorded for commands the cloud sends by itself (rollout offers); no API
# token has it, so it can never be mistaken for a person.
SYSTEM_ROLE = "system"
# A sender's name: a token's configured name, ``<role>:<fingerprint>`` without one, or
# ``rollout:<id>`` (an id is at most 64 chars, so 128 leaves room for the prefix).
SENDER_NAME_MAX = 128
# Enough for a sentence ("till 3 jammed with a customer's card inside, ticket 4711");
# a reason is an audit note, not a document.
REASON_MAX = 500


@dataclass(frozen=True, slots=True)
class SensitiveCommand:
    """A device command that needs a stated reason and an allowed role."""

    family: str
    name: str
    summary: str


SENSITIVE_COMMANDS: tuple[SensitiveCommand, ...] = (
    SensitiveCommand("printer", "open_drawer", "opens the till's cash drawer"),
    SensitiveCommand("vending", "unlock", "unlocks a vending cabinet door"),
)

SENSITIVE_NAMES: frozenset[str] = frozenset(c.name for c in SENSITIVE_COMMANDS)


def is_sensitive(family: str | None, name: str) -> bool:
    """Whether command ``name`` to a device of ``family`` is sensitive. An unknown family
    (a device the cloud has not seen in a birth yet) errs on the safe side: any command
    whose name is sensitive for some family is."""
    if family is None:
        return name in SENSITIVE_NAMES
    return any(c.family == family and c.name == name for c in SENSITIVE_COMMANDS)
