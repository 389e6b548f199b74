"""Ids: the one id type of every message, route and path, and sortable unique ids.

An id (store, device, event, order, sku, member ...) is 1-64 characters of letters,
digits, ``-``, ``_``, ``.`` and ``:``, starting with a letter or digit. It is defined
here once (decision 0031) and used as:

* ``Id``: the pydantic type of every id field of a message (``protocols.messages``,
  ``protocols.orders`` ...) and of every id the cloud API takes in a path, query or
  body, so a bad id is refused at the contract (a ``DecodeError`` / a 422);
* ``valid_id`` / ``check_id``: for ids that arrive some other way (settings, topics,
  file names).

The alphabet is what makes an id safe to put anywhere we put one: an MQTT topic level
(no ``/``, ``+``, ``#``), a file name (no ``/``, no leading ``.``, so never ``..``), a
URL path segment, a metric label. Composed keys (``<store>/<member>``) are not ids.

``uuid7`` makes the ids of events, commands and sessions: sortable, and within the
alphabet. Python 3.14 has ``uuid.uuid7``; we support 3.11, so the few lines of the
RFC 9562 layout are written here once.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from typing import Annotated

from pydantic import Field

from protocols.errors import IdError

ID_MAX = 64
# Anchored for JSON Schema and pydantic (whose Rust regex ``$`` is the very end).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
# Python's ``$`` also matches before a final newline, so the checker uses fullmatch on
# the unanchored rule ("a\n" is not an id).
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
ID_RULE = "1-64 letters, digits, '-', '_', '.', ':', starting with a letter or digit"

Id = Annotated[str, Field(pattern=ID_PATTERN)]
"""The id type: use it for every id field of a message or an API schema."""


# A signed code as scanned (a member code ``SFM2...``, a join code ``SFJ1...``, a
# pickup code): longer than an id, the same characters; its own parser checks the rest.
SIGNED_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{3,511}$"
SignedCode = Annotated[str, Field(pattern=SIGNED_CODE_PATTERN)]


def valid_id(value: object) -> bool:
    """True if ``value`` is an id (``Id``)."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def check_id(value: str, what: str = "id") -> str:
    """``value`` if it is an id, else ``IdError`` naming ``what``."""
    if not valid_id(value):
        raise IdError(value, what, f"must be {ID_RULE}")
    return value


def uuid7(now_ms: int | None = None) -> str:
    """Return a UUIDv7 string: 48 bits of Unix ms, version, 74 random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    return str(uuid.UUID(int=value))
