"""Decode and store one batch of MQTT messages in one transaction (synchronous).

``BatchProcessor.process`` runs in a worker thread (see ``worker.py``). It returns
normally only when everything that should be stored is committed: the caller may
then acknowledge every message of the batch. It raises ``DatabaseUnavailable``
when nothing may be acknowledged.

Failure handling, in order:

1. a message that fails decoding is rejected up front (counted, acknowledged, never
   stored);
2. the batch is applied in one transaction;
3. if the database refuses it for a reason tied to the data (``IntegrityError``,
   ``DataError``: e.g. a race with another worker creating the same store, or a value
   PostgreSQL will not store), the batch is retried once, then message by message, and a
   message the database still refuses is rejected as ``db_rejected``;
4. any other error (connection lost, disk full, locked, a bug) raises
   ``DatabaseUnavailable``: nothing is acknowledged, the broker redelivers later.

A birth that is not stored (1 or 3) is listed in ``BatchResult.refused``: the worker
answers its store with a ``BirthRefused`` instead of leaving it waiting for a ``ready``
that never comes (decision 0024).

Every event of the batch that decoded is listed in ``BatchResult.acks`` by store once
the batch is done with (stored, a duplicate, or refused by the database for good): the
worker acknowledges them to their store, which deletes them from its outbox only then
(decision 0028).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from cloud.enrolment.service import is_enrolled
from cloud.errors import DatabaseUnavailable
from cloud.ingest.apply import Outcome, apply_batch
from cloud.ingest.decode import Inbound, channel_of, decode_uplink
from cloud.ingest.hooks import PostCommitHooks
from protocols import topics
from protocols.clock import Clock
from protocols.errors import ProtocolError, TopicError
from protocols.messages import Birth, Event

logger = logging.getLogger(__name__)

_DATA_ERRORS = (sa_exc.IntegrityError, sa_exc.DataError)
# The agent's encoder writes ``bd_seq`` third, within the first few dozen bytes of a
# birth; a refusal names it when it is there, without parsing an oversized payload.
_BD_SEQ = re.compile(rb'"bd_seq"\s*:\s*(\d{1,15})[,}\s]')
_BD_SEQ_HEAD = 256


@dataclass(frozen=True, slots=True)
class RefusedBirth:
    """A store's birth (or unreadable state) ingest did not store, and why."""

    store_id: str
    bd_seq: int | None
    reason: str
    detail: str


@dataclass
class BatchResult:
    outcome: Outcome
    channels: Counter[str] = field(default_factory=Counter)
    # (store id, bd_seq) of every birth in the committed batch: each store is told
    # its birth was seen (``topics.ready``) before it drains its outbox.
    births: list[tuple[str, int]] = field(default_factory=list)
    refused: list[RefusedBirth] = field(default_factory=list)
    # store id -> ids of its events this batch is done with (``topics.ack``).
    acks: dict[str, list[str]] = field(default_factory=dict)


class BatchProcessor:
    def __init__(
        self, sessions: sessionmaker[Session], *, clock: Clock, max_payload: int,
        hooks: PostCommitHooks | None = None, require_enrolment: bool = False,
    ) -> None:
        self._sessions = sessions
        self._require_enrolment = require_enrolment
        self._clock = clock
        self._max_payload = max_payload
        self._hooks = hooks

    def process(self, raw: Sequence[tuple[str, bytes | bytearray]]) -> BatchResult:
        result = BatchResult(Outcome())
        items: list[Inbound] = []
        for topic, payload in raw:
            try:
                item = decode_uplink(topic, payload, max_payload=self._max_payload)
            except ProtocolError as err:
                result.channels[channel_of(topic)] += 1
                reason = getattr(err, "reason", "invalid")
                result.outcome.rejected[reason] += 1
                logger.warning("rejected message on %s: %s", topic[:200], err)
                if (refused := _refused_state(topic, payload, err)) is not None:
                    result.refused.append(refused)
                continue
            result.channels[item.topic.channel] += 1
            items.append(item)
        if self._require_enrolment:
            items = self._enrolled_only(items, result)
        if items:
            result.outcome.add(self._store(items, refused=result.refused))
            self._after_commit(items)
            not_stored = {(r.store_id, r.bd_seq) for r in result.refused}
            result.births = [(item.store_id, item.msg.bd_seq) for item in items
                             if isinstance(item.msg, Birth)
                             and (item.store_id, item.msg.bd_seq) not in not_stored]
            for item in items:
                if isinstance(item.msg, Event):
                    result.acks.setdefault(item.store_id, []).append(item.msg.id)
        return result

    def _enrolled_only(self, items: list[Inbound], result: BatchResult) -> list[Inbound]:
        """Births of stores not enrolled are refused (``not_enrolled``, decision 0035)."""
        births = {item.store_id for item in items if isinstance(item.msg, Birth)}
        if not births:
            return items
        try:
            with self._sessions() as session:
                unknown = {s for s in births if not is_enrolled(session, s)}
        except Exception as err:
            raise DatabaseUnavailable(f"enrolment check: {type(err).__name__}: {err}") from err
        kept = []
        for item in items:
            if isinstance(item.msg, Birth) and item.store_id in unknown:
                result.outcome.rejected["not_enrolled"] += 1
                result.refused.append(RefusedBirth(
                    item.store_id, item.msg.bd_seq, "not_enrolled",
                    f"store {item.store_id} is not enrolled (or revoked): provision it"))
            else:
                kept.append(item)
        return kept

    def _after_commit(self, items: list[Inbound]) -> None:
        """Run post-commit hooks (see hooks.py) on every event of the batch."""
        if not self._hooks:
            return
        events = [item.msg for item in items if isinstance(item.msg, Event)]
        if not events:
            return
        try:
            self._hooks.run(self._sessions, events, now_ms=self._clock.now_ms())
        except Exception as err:
            # Only a database failure gets here: acknowledge nothing, so the broker
            # redelivers and the (idempotent) hooks run again.
            raise DatabaseUnavailable(f"hook: {type(err).__name__}: {err}") from err

    def _store(self, items: list[Inbound], *, refused: list[RefusedBirth]) -> Outcome:
        try:
            return self._transaction(items)
        except _DATA_ERRORS as err:
            logger.info("batch of %d refused (%s); retrying", len(items), type(err).__name__)
        try:
            return self._transaction(items)
        except _DATA_ERRORS:
            logger.warning("batch of %d refused twice; storing message by message", len(items))
        out = Outcome()
        for item in items:
            out.add(self._store_one(item, refused=refused))
        return out

    def _store_one(self, item: Inbound, *, refused: list[RefusedBirth]) -> Outcome:
        detail = ""
        for attempt in (1, 2):
            try:
                return self._transaction([item])
            except _DATA_ERRORS as err:
                if attempt == 2:
                    detail = str(err.orig)
                    logger.error("store %s: database refused %s message: %s",
                                 item.store_id, item.topic.channel, detail)
        out = Outcome()
        out.rejected["db_rejected"] += 1
        if isinstance(item.msg, Birth):
            refused.append(RefusedBirth(item.store_id, item.msg.bd_seq, "db_rejected",
                                        detail[:200]))
        return out

    def _transaction(self, items: list[Inbound]) -> Outcome:
        now_ms = self._clock.now_ms()
        try:
            with self._sessions.begin() as session:
                return apply_batch(session, items, now_ms=now_ms)
        except _DATA_ERRORS:
            raise
        except Exception as err:
            # Connection refused, server gone, database locked, a bug: none of these
            # is the message's fault, so none of the batch may be acknowledged.
            raise DatabaseUnavailable(f"{type(err).__name__}: {err}") from err


def _refused_state(topic: str, payload: bytes | bytearray,
                   err: ProtocolError) -> RefusedBirth | None:
    """The refusal to answer for a ``state`` message that failed decoding, else None."""
    try:
        where = topics.parse_uplink(topic)
    except TopicError:
        return None
    if where.channel != "state":
        return None
    reason = getattr(err, "reason", "invalid")
    if getattr(err, "field", None) == "v":  # a birth of a protocol version we do not speak
        reason = "unsupported_version"
    match = _BD_SEQ.search(payload[:_BD_SEQ_HEAD])
    return RefusedBirth(where.store_id, int(match.group(1)) if match else None, reason,
                        str(err)[:200])
