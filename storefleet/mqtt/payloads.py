"""Decode a received payload, or count and log why not: the one "bad payload" path.

    ack = decode_or_count(payload, EventsAck, bad=metrics.bad_payloads, source="cloud",
                          what="ack message", log=logger)
    if ack is None:
        return          # counted in bad{source="cloud", reason=...} and logged once

Every receiver of the agent did the same five lines after ``protocols.codec.decode``:
catch ``ProtocolError``, count the error's ``reason`` in a labelled counter, log a
warning, drop the message (decision 0034). ``count_bad`` is that path for a payload
checked by something other than ``decode`` (a topic, two models in turn).
"""

from __future__ import annotations

import logging
from typing import TypeVar

from prometheus_client import Counter
from pydantic import BaseModel

from protocols.codec import DEFAULT_MAX_PAYLOAD, decode
from protocols.errors import ProtocolError

M = TypeVar("M", bound=BaseModel)


def decode_or_count(payload: bytes | bytearray | str, model: type[M], *, bad: Counter,
                    what: str, log: logging.Logger, max_bytes: int = DEFAULT_MAX_PAYLOAD,
                    **labels: str) -> M | None:
    """``decode(payload, model)``, or ``None`` once the refusal is counted in
    ``bad{**labels, reason}`` and logged as ``bad {what}: {error}`` on ``log``."""
    try:
        return decode(payload, model, max_bytes=max_bytes)
    except ProtocolError as err:
        count_bad(err, bad=bad, what=what, log=log, **labels)
        return None


def count_bad(err: ProtocolError, *, bad: Counter, what: str, log: logging.Logger,
              **labels: str) -> None:
    """Count ``err`` by its reason code and log one warning naming ``what`` was bad."""
    bad.labels(**labels, reason=err.reason).inc()
    log.warning("bad %s: %s", what, err)
