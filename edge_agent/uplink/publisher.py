"""Drains the outbox over one uplink session: QoS 1, a window of publishes in flight.

Rows are published in seq order (paho writes them to the socket in call order). A
row leaves the outbox only when its event is safe:

- **cloud acks** (the default with cloud ingest, decision 0028): when ingest says it
  committed the event (``topics.ack``, ``OutboxPublisher.on_ack``). The broker's PUBACK
  only frees a slot of the publish window: Mosquitto saves what it acknowledged at its
  autosave interval, so a broker crash loses it. Sent rows wait for the cloud's ack;
  one unacknowledged after ``timeout_s`` is sent again (the wait doubles per try, up to
  ``timeout_max_s``), all are sent again when the cloud answers a birth again (ingest
  reconnected: what it had in flight may be gone), and at most ``window`` rows wait at
  once, so an ingest outage parks a bounded number of a store's events in the broker.
- **broker PUBACKs** (no cloud ingest to answer: ``await_cloud_ready = false``): after
  the PUBACK, in batches (decision 0003).

When the session drops, whatever is not deleted stays in the outbox and the next
session starts again from the oldest row, so nothing is lost or reordered (an event
may be delivered more than once; the cloud stores by id). Every publish of a row that
was published before is counted in ``storefleet_uplink_resent_total{reason}``.

``historical``: a row enqueued before this session started (while offline, in an
earlier session, or by an earlier run of the agent), or attempted before, is sent with
``historical: true`` - re-encoded, same id and seq.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from edge_agent.metrics import AgentMetrics
from edge_agent.uplink.outbox import Outbox, Row
from protocols.codec import decode, encode
from protocols.errors import DecodeError
from protocols.messages import Event

logger = logging.getLogger(__name__)

_DELETE_BATCH = 500  # acknowledged rows deleted per transaction (at most)
# Acknowledged rows are deleted every this often: fewer, larger transactions. A crash
# in between re-sends at most this long's worth of acknowledged events (deduped by id).
_DELETE_EVERY_S = 0.1
_IDLE_POLL_S = 1.0  # re-check the outbox this often even without a wake-up
_MAX_DOUBLINGS = 30  # the re-send wait stops doubling here (the max caps it long before)

ResendReason = Literal["session", "timeout", "ready"]


class Publish(Protocol):
    async def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class CloudAcks:
    """Rows wait for the cloud's acknowledgement (decision 0028); see the module doc."""

    timeout_s: float
    timeout_max_s: float
    window: int


@dataclass(slots=True)
class _Sent:
    """A row the broker acknowledged and the cloud has not yet."""

    due: float  # loop time at which it is sent again
    tries: int
    reason: ResendReason = "timeout"


def as_historical(payload: bytes) -> bytes:
    """The same event with ``historical: true`` (payloads that are not events pass as-is)."""
    try:
        event = decode(payload, Event)
    except DecodeError:
        return payload
    if event.historical:
        return payload
    return encode(event.model_copy(update={"historical": True}))


class OutboxPublisher:
    def __init__(
        self,
        outbox: Outbox,
        *,
        window: int,
        metrics: AgentMetrics,
        cloud_acks: CloudAcks | None = None,
    ) -> None:
        self._outbox = outbox
        self._window = window
        self._metrics = metrics
        self._cloud_acks = cloud_acks
        self._run: _SessionRun | None = None

    async def run(self, link: Publish, *, historical_upto: int) -> None:
        """Publish until cancelled or the link fails (raises the link's error).

        ``historical_upto``: the outbox's ``last_seq`` when this session started.
        """
        run = _SessionRun(
            self._outbox, link, self._window, self._metrics, historical_upto, self._cloud_acks
        )
        self._run = run
        try:
            await run.loop()
        finally:
            self._run = None

    async def on_ack(self, ids: Sequence[str]) -> int:
        """The cloud committed these events: delete them (any session's); how many were
        still in the outbox."""
        seqs = await self._outbox.delete_ids(ids)
        self._metrics.events_cloud_acked.inc(len(seqs))
        if self._run is not None:
            self._run.acked(seqs)
        return len(seqs)

    def resend_unacked(self) -> None:
        """Send every row still waiting for the cloud's ack again, now (ingest answered
        a birth again: what it had in flight may be lost)."""
        if self._run is not None:
            self._run.all_due()


class _SessionRun:
    """State of one session's publishing: the window, acked seqs, the first failure."""

    def __init__(
        self,
        outbox: Outbox,
        link: Publish,
        window: int,
        metrics: AgentMetrics,
        historical_upto: int,
        cloud_acks: CloudAcks | None,
    ) -> None:
        self._outbox = outbox
        self._link = link
        self._window = window
        self._metrics = metrics
        self._historical_upto = historical_upto
        self._cloud_acks = cloud_acks
        self._slots = asyncio.Semaphore(window)
        self._acked: list[int] = []  # broker-acked seqs to delete (no cloud acks)
        self._sent: dict[int, _Sent] = {}  # awaiting the cloud's ack, by seq
        self._next_due = float("inf")  # earliest ``_Sent.due`` (or later: a lower bound)
        self._publishing: set[int] = set()  # seqs whose publish is in flight
        self._gone: set[int] = set()  # of those, deleted by a cloud ack meanwhile
        self._failed: BaseException | None = None
        self._poke = asyncio.Event()  # a failure, an ack that freed room, rows due
        self._inflight: set[asyncio.Task[None]] = set()

    # ---- called from the downlink --------------------------------------------------

    def acked(self, seqs: Sequence[int]) -> None:
        for seq in seqs:
            if self._sent.pop(seq, None) is None and seq in self._publishing:
                self._gone.add(seq)
        self._poke.set()

    def all_due(self) -> None:
        now = _now()
        for sent in self._sent.values():
            sent.due, sent.reason = now, "ready"
        self._next_due = now
        self._poke.set()

    # ---- the loop ---------------------------------------------------------------------

    async def loop(self) -> None:
        after = 0
        flusher = asyncio.create_task(self._flush_loop(), name="outbox-delete-acked")
        try:
            while True:
                self._raise_if_failed()
                if await self._resend_due():
                    continue
                room = self._room()
                rows = []
                if room > 0:
                    rows = await self._outbox.peek(room, after_seq=after, mark_attempt=True)
                if not rows:
                    await self._idle(rows_may_help=room > 0)
                    continue
                for row in rows:
                    await self._send(row, tries=0, reason="session" if row.attempts else None)
                    after = row.seq
        finally:
            for task in list(self._inflight):
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            # Rows acknowledged before the session ended must not be sent again.
            await asyncio.shield(self._delete_acked())

    def _room(self) -> int:
        """How many new rows may be sent now."""
        if self._cloud_acks is None:
            return self._window
        waiting = len(self._sent) + len(self._publishing)
        return min(self._window, self._cloud_acks.window - waiting)

    async def _resend_due(self) -> bool:
        """Send again the rows whose cloud ack is overdue; False if none is."""
        now = _now()
        if self._cloud_acks is None or now < self._next_due:
            return False
        due = [seq for seq, sent in self._sent.items() if sent.due <= now][: self._window]
        waiting = {seq: self._sent.pop(seq) for seq in due}
        # Rows due beyond this window's worth stay due: the next turn takes them.
        self._next_due = min((s.due for s in self._sent.values()), default=float("inf"))
        if not due:
            return False
        rows = await self._outbox.rows(due, mark_attempt=True)
        if rows:
            logger.info("%d events not acknowledged by the cloud in time: sent again "
                        "(oldest seq %d)", len(rows), rows[0].seq)
        for row in rows:  # a row that is gone was acknowledged meanwhile
            sent = waiting[row.seq]
            await self._send(row, tries=sent.tries, reason=sent.reason)
        return True

    async def _send(self, row: Row, *, tries: int, reason: ResendReason | None) -> None:
        # A failed publish releases its slot too, so this wakes up and sees the failure.
        await self._slots.acquire()
        self._raise_if_failed()
        if reason is not None:
            self._metrics.events_resent.labels(reason=reason).inc()
        self._publishing.add(row.seq)
        task = asyncio.create_task(self._publish(row, tries), name=f"uplink-pub-{row.seq}")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _idle(self, *, rows_may_help: bool) -> None:
        wait_s = min(_IDLE_POLL_S, max(0.0, self._next_due - _now()))
        waiters: set[asyncio.Task[object]] = {
            asyncio.create_task(self._poke.wait(), name="outbox-wait-poke")
        }
        if rows_may_help:
            waiters.add(asyncio.create_task(self._outbox.wait_for_rows(wait_s),
                                            name="outbox-wait"))
        try:
            await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in waiters:
                t.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        self._poke.clear()

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise self._failed

    async def _publish(self, row: Row, tries: int) -> None:
        try:
            historical = row.attempts > 0 or row.seq <= self._historical_upto
            payload = as_historical(row.payload) if historical else row.payload
            await self._link.publish(row.topic, payload, qos=1)
            self._metrics.events_published.inc()
            if self._cloud_acks is None:
                self._acked.append(row.seq)
            elif row.seq in self._gone:  # the cloud acknowledged it before the broker did
                self._gone.discard(row.seq)
            else:
                acks = self._cloud_acks
                backoff = acks.timeout_s * 2 ** min(tries, _MAX_DOUBLINGS)
                due = _now() + min(backoff, acks.timeout_max_s)
                self._sent[row.seq] = _Sent(due=due, tries=tries + 1)
                self._next_due = min(self._next_due, due)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the link failed: end the session, keep the row
            if self._failed is None:
                self._failed = err
                self._poke.set()
        finally:
            self._publishing.discard(row.seq)
            self._slots.release()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(_DELETE_EVERY_S)
            if self._acked:
                await self._delete_acked()

    async def _delete_acked(self) -> None:
        while self._acked:
            batch, self._acked = self._acked[:_DELETE_BATCH], self._acked[_DELETE_BATCH:]
            await self._outbox.delete(batch)


def _now() -> float:
    return asyncio.get_running_loop().time()
