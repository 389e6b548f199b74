"""Drains the outbox over one uplink session: QoS 1, a window of publishes in flight.

Rows are published in seq order (paho writes them to the socket in call order) and
deleted only after their PUBACK, in batches. When the session drops, unacknowledged
rows stay in the outbox and the next session starts again from the oldest row, so
nothing is lost or reordered (a row may be delivered twice; the cloud dedupes by id).

``historical``: a row enqueued before this session started (while offline, in an
earlier session, or by an earlier run of the agent), or attempted before, is sent with
``historical: true`` - re-encoded, same id and seq.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

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


class Publish(Protocol):
    async def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False
    ) -> None: ...


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
    def __init__(self, outbox: Outbox, *, window: int, metrics: AgentMetrics) -> None:
        self._outbox = outbox
        self._window = window
        self._metrics = metrics

    async def run(self, link: Publish, *, historical_upto: int) -> None:
        """Publish until cancelled or the link fails (raises the link's error).

        ``historical_upto``: the outbox's ``last_seq`` when this session started.
        """
        run = _SessionRun(self._outbox, link, self._window, self._metrics, historical_upto)
        await run.loop()


class _SessionRun:
    """State of one session's publishing: the window, acked seqs, the first failure."""

    def __init__(
        self,
        outbox: Outbox,
        link: Publish,
        window: int,
        metrics: AgentMetrics,
        historical_upto: int,
    ) -> None:
        self._outbox = outbox
        self._link = link
        self._window = window
        self._metrics = metrics
        self._historical_upto = historical_upto
        self._slots = asyncio.Semaphore(window)
        self._acked: list[int] = []
        self._failed: BaseException | None = None
        self._failure = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()

    async def loop(self) -> None:
        after = 0
        flusher = asyncio.create_task(self._flush_loop(), name="outbox-delete-acked")
        try:
            while True:
                self._raise_if_failed()
                rows = await self._outbox.peek(self._window, after_seq=after, mark_attempt=True)
                if not rows:
                    await self._idle()
                    continue
                for row in rows:
                    await self._acquire_slot()
                    task = asyncio.create_task(self._publish(row), name=f"uplink-pub-{row.seq}")
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
                    after = row.seq
        finally:
            for task in list(self._inflight):
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            # Rows acknowledged before the session ended must not be sent again.
            await asyncio.shield(self._delete_acked())

    async def _idle(self) -> None:
        wake = asyncio.create_task(self._outbox.wait_for_rows(_IDLE_POLL_S), name="outbox-wait")
        fail = asyncio.create_task(self._failure.wait(), name="outbox-wait-failure")
        try:
            await asyncio.wait({wake, fail}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (wake, fail):
                t.cancel()
            await asyncio.gather(wake, fail, return_exceptions=True)

    async def _acquire_slot(self) -> None:
        # A failed publish releases its slot too, so this wakes up and sees the failure.
        await self._slots.acquire()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise self._failed

    async def _publish(self, row: Row) -> None:
        try:
            historical = row.attempts > 0 or row.seq <= self._historical_upto
            payload = as_historical(row.payload) if historical else row.payload
            await self._link.publish(row.topic, payload, qos=1)
            self._acked.append(row.seq)
            self._metrics.events_published.inc()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the link failed: end the session, keep the row
            if self._failed is None:
                self._failed = err
                self._failure.set()
        finally:
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
