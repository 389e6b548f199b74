"""The ingest worker: MQTT uplink -> database, acknowledging only what is committed.

    worker = IngestWorker(settings, registry=CollectorRegistry())
    await worker.run(stop_event)          # returns after stop_event is set

Nothing lost: the worker holds a persistent session (fixed client id,
``clean_session=False``, QoS 1 subscriptions), turns off paho's automatic PUBACK and
acknowledges each QoS 1 message only after the transaction that stored it has
committed. A crash or lost connection before that leaves the message unacknowledged
in the broker's session, which redelivers it on reconnect; storage is idempotent, so
a redelivered message changes nothing the second time.

Batching: the first message of a batch is awaited, then more are drained for up to
``batch_window_s`` or ``batch_max`` messages; the batch is decoded and committed in one
transaction in a worker thread, and acknowledged in arrival order (MQTT 3.1.1 wants
PUBACKs in the order the PUBLISHes came).

Then each store whose events the batch held is told which ids are committed
(``topics.ack``, ``EventsAck``): a broker's PUBACK to the store proves nothing across a
broker crash, so the store keeps every event until this acknowledgement (decision 0028).

A clean stop (``stop_event`` set: SIGTERM, scaling down) hands over instead of parking
(decision 0029): while a persistent session keeps its shared subscription, the broker
goes on routing the group's messages to it, and they wait there until the worker comes
back. So the worker unsubscribes first (new messages go to the other workers), stores
and acknowledges what was already on its way to it until it is idle or ``drain_s`` has
passed, disconnects and ends the session (a ``clean_session=True`` connect under the
same client id), which discards anything left. What is discarded is not lost: every
store keeps an event until ingest acknowledges it and re-sends it (decision 0028). A
crash or a cancelled task keeps the session, as before: the broker queues for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiomqtt
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from cloud.backoff import Backoff
from cloud.db.engine import make_engine, make_session_factory, writer
from cloud.db.migrate import upgrade
from cloud.errors import DatabaseUnavailable
from cloud.ingest.batch import BatchProcessor, BatchResult
from cloud.ingest.hooks import PostCommitHooks
from cloud.metrics import IngestMetrics
from cloud.settings import CloudSettings
from protocols import encode, topics
from protocols.clock import Clock, SystemClock
from protocols.messages import (
    ACK_MAX_IDS,
    BirthRefused,
    CloudReady,
    EventsAck,
    RebirthRequest,
)

logger = logging.getLogger(__name__)

# 50 ms / 500 messages: large enough to amortise a commit (one fsync) over many
# messages at load, short enough that a lone event is stored within a blink.
BATCH_WINDOW_S = 0.05
BATCH_MAX = 500
# A clean stop drains for at most this long (a scaled-down pod has a grace period,
# Kubernetes' default is 30 s; the drain must end well within it) ...
DRAIN_S = 5.0
# ... and ends as soon as nothing came for this long after the unsubscribe: the broker
# sends what it queued for us as fast as we acknowledge, so a pause this long on a
# working connection means the session is empty (a round trip is milliseconds).
DRAIN_IDLE_S = 0.5


class IngestWorker:
    def __init__(
        self,
        settings: CloudSettings,
        *,
        registry: CollectorRegistry,
        clock: Clock | None = None,
        engine: Engine | None = None,
        batch_window_s: float = BATCH_WINDOW_S,
        batch_max: int = BATCH_MAX,
        backoff: Backoff | None = None,
        migrate: bool = True,
        hooks: PostCommitHooks | None = None,
        drain_s: float = DRAIN_S,
        drain_idle_s: float = DRAIN_IDLE_S,
    ) -> None:
        self.settings = settings
        self.metrics = IngestMetrics(registry)
        self._clock = clock or SystemClock()
        self._own_engine = engine is None
        self._engine = engine or make_engine(settings.database_url)
        self._processor = BatchProcessor(
            make_session_factory(writer(self._engine)),
            clock=self._clock,
            max_payload=settings.max_payload,
            hooks=hooks,
        )
        self._batch_window_s = batch_window_s
        self._batch_max = batch_max
        self._backoff = backoff or Backoff()
        self._migrate = migrate
        self._drain_s = drain_s
        self._drain_idle_s = drain_idle_s
        self._drained: str | None = None  # how a clean stop's drain ended: idle, deadline
        self.connected = asyncio.Event()  # set while subscribed; tests wait on it
        self._pending: asyncio.Future[Any] | None = None  # the next message, being awaited

    async def run(self, stop_event: asyncio.Event | None = None) -> None:
        """Supervise the connection until ``stop_event`` is set (or the task is cancelled)."""
        stop = stop_event or asyncio.Event()
        if self._migrate:
            # Blocking DDL: keep it off the event loop (the API may share the loop).
            await asyncio.to_thread(upgrade, self._engine)
        try:
            while not stop.is_set():
                try:
                    await self._connect_and_consume(stop)
                except aiomqtt.MqttError as err:
                    self.metrics.connect_failures.inc()
                    logger.warning("ingest: broker connection failed or lost: %s", err)
                except DatabaseUnavailable as err:
                    self.metrics.db_errors.inc()
                    logger.error("ingest: %s; not acknowledging, will reconnect", err)
                finally:
                    self.connected.clear()
                    self.metrics.connected.set(0)
                if not stop.is_set():
                    delay = self._backoff.next()
                    logger.info("ingest: reconnecting in %.1f s", delay)
                    await _wait(stop, delay)
            # Only a clean stop gets here (a cancelled task or an error does not): end
            # the session so the broker parks nothing for a worker that is not coming back.
            await self._end_session()
        finally:
            if self._own_engine:
                self._engine.dispose()

    def _client(self, *, clean_session: bool = False) -> aiomqtt.Client:
        client = aiomqtt.Client(
            **self.settings.mqtt.client_options(),  # mqtt:// or mqtts:// (decision 0032)
            identifier=self.settings.ingest_client_id,
            # persistent session: the broker keeps what we missed (True only to end it)
            clean_session=clean_session,
            keepalive=self.settings.keepalive_s,
            protocol=aiomqtt.ProtocolVersion.V311,
        )
        # aiomqtt has no public switch for manual acknowledgement; paho has
        # (Client.manual_ack_set / Client.ack), and aiomqtt documents ``_client`` as the
        # escape hatch to the paho client. Without this paho PUBACKs a message as soon
        # as it is queued, before it is stored, and a crash then loses it.
        client._client.manual_ack_set(True)
        return client

    async def _connect_and_consume(self, stop: asyncio.Event) -> None:
        async with self._client() as client:
            for filter_ in topics.cloud_uplink_filters():
                group = self.settings.share_group
                await client.subscribe(topics.shared(filter_, group) if group else filter_, qos=1)
            logger.info("ingest: connected to %s as %s (share group %s)",
                        self.settings.mqtt_url, self.settings.ingest_client_id,
                        self.settings.share_group)
            # Births are retained, but a broker does not deliver retained messages to
            # shared subscriptions, and births published before this worker's session
            # existed were never queued for it. Ask every store to be born again
            # (Sparkplug's rule for a host application coming online); a store answers
            # with its current birth, which ingest applies idempotently by bd_seq.
            await client.publish(
                topics.fleet("rebirth"),
                encode(RebirthRequest(ts=self._clock.now_ms())),
                qos=1,
            )
            self.metrics.connected.set(1)
            self.connected.set()
            messages = client.messages
            try:
                while not stop.is_set():
                    batch = await self._next_batch(messages, stop)
                    if batch:
                        await self._handle(client, batch)
                        self._backoff.reset()
                await self._drain(client, messages)
            finally:
                # A message taken but not stored was not acknowledged: the broker
                # redelivers it on the next connection.
                pending, self._pending = self._pending, None
                if pending is not None:
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pending

    async def _drain(self, client: aiomqtt.Client,
                     messages: aiomqtt.client.MessagesIterator) -> None:
        """Clean stop, still connected: unsubscribe, then store and acknowledge what the
        broker had already routed to this session until idle or ``drain_s`` passed."""
        started = time.monotonic()
        deadline = started + self._drain_s
        for filter_ in topics.cloud_uplink_filters():
            group = self.settings.share_group
            # After the UNSUBACK the broker routes the group's new messages to the other
            # workers only; what it queued for us it still delivers (Mosquitto does).
            await client.unsubscribe(topics.shared(filter_, group) if group else filter_)
        drained, idle = 0, False
        while (remaining := deadline - time.monotonic()) > 0:
            batch = await self._next_batch(messages, None,
                                           wait_s=min(self._drain_idle_s, remaining))
            if not batch:
                idle = remaining > self._drain_idle_s
                break
            await self._handle(client, batch)
            drained += len(batch)
        self.metrics.drained.inc(drained)
        self._drained = outcome = "idle" if idle else "deadline"
        logger.info("ingest: clean stop: unsubscribed, drained %d messages in %.1f s (%s)%s",
                    drained, time.monotonic() - started, outcome,
                    "" if idle else "; the rest of the session is discarded and re-sent "
                    "by the stores after their ack timeout")

    async def _end_session(self) -> None:
        """End this client id's persistent session at the broker (MQTT 3.1.1: connect
        with ``clean_session=True``, disconnect): nothing is queued for it any more."""
        outcome = self._drained or "not_drained"
        if self._drained is None:
            # Stopped while disconnected (or the drain failed): the session still holds
            # its subscriptions and what the broker queued meanwhile; ending it discards
            # that, and the stores re-send it after their ack timeout.
            logger.warning("ingest: clean stop without a drain (not connected): ending the "
                           "session; the stores re-send what it held")
        try:
            async with self._client(clean_session=True):
                pass
        except aiomqtt.MqttError as err:
            outcome = "session_kept"
            logger.warning("ingest: could not end the session at the broker (%s): if it "
                           "still subscribes, the broker parks messages for it until "
                           "this client id returns; the stores re-send them meanwhile", err)
        self.metrics.stops.labels(outcome=outcome).inc()

    async def _next_batch(
        self, messages: aiomqtt.client.MessagesIterator, stop: asyncio.Event | None,
        *, wait_s: float | None = None,
    ) -> list[aiomqtt.Message]:
        """A batch, once the first message came; empty if ``stop`` was set or nothing
        came within ``wait_s`` first."""
        # aiomqtt's iterator is not cancellation-safe: cancelling ``anext`` right after
        # it took a message off the queue drops that message (it is then redelivered
        # only after a reconnect, as it is never acknowledged). So a pending ``anext``
        # is never cancelled on a timeout; it is kept and becomes the next message.
        first = self._receive(messages)
        stopped = asyncio.ensure_future(stop.wait()) if stop is not None else None
        try:
            await asyncio.wait({first} | ({stopped} if stopped else set()), timeout=wait_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stopped is not None:
                stopped.cancel()
        if not first.done():
            return []
        batch: list[aiomqtt.Message] = []
        deadline = time.monotonic() + self._batch_window_s
        while len(batch) < self._batch_max:
            pending = self._receive(messages)
            if not pending.done():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    break
                await asyncio.wait({pending}, timeout=remaining)
                if not pending.done():
                    break
            self._pending = None
            batch.append(pending.result())  # raises MqttError when the connection dropped
        return batch

    def _receive(self, messages: aiomqtt.client.MessagesIterator) -> asyncio.Future[Any]:
        if self._pending is None:
            self._pending = asyncio.ensure_future(anext(messages))
        return self._pending

    async def _handle(self, client: aiomqtt.Client, batch: list[aiomqtt.Message]) -> None:
        raw = [(m.topic.value, _as_bytes(m.payload)) for m in batch]
        started = time.perf_counter()
        # Decoding and the transaction block (SQLite fsync, network round trips to
        # PostgreSQL): run them in a thread so the loop keeps reading the socket and
        # serving the API that may share it.
        work = asyncio.ensure_future(asyncio.to_thread(self._processor.process, raw))
        try:
            result = await asyncio.shield(work)
        except asyncio.CancelledError:
            # A thread cannot be interrupted: let the transaction finish so the engine
            # is not disposed under it, then stop without acknowledging anything (the
            # broker redelivers; storage is idempotent).
            with contextlib.suppress(Exception):
                await work
            raise
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(batch))
        # Committed: now, and only now, the broker may forget these messages.
        for message in batch:
            if message.qos > 0:
                rc = client._client.ack(message.mid, message.qos)
                if rc != 0:
                    logger.warning("ingest: could not ack mid %d (rc %s)", message.mid, rc)
        self._count(result)
        for store_id, bd_seq in result.births:
            # The birth is stored, so this worker is subscribed: tell the store it may
            # drain its outbox (a store waits for this after every connect).
            ready = CloudReady(bd_seq=bd_seq, ts=self._clock.now_ms())
            await client.publish(topics.ready(store_id), encode(ready), qos=1)
        for refused in result.refused:
            # Not stored, so never ready: say so, or the store waits for ever with its
            # outbox growing (decision 0024). The store logs, counts and alarms on it.
            self.metrics.births_refused.labels(reason=refused.reason).inc()
            logger.warning("ingest: refused the birth of store %s (bd_seq %s): %s",
                           refused.store_id, refused.bd_seq, refused.detail)
            answer = BirthRefused(bd_seq=refused.bd_seq, reason=refused.reason,
                                  detail=refused.detail, ts=self._clock.now_ms())
            await client.publish(topics.ready(refused.store_id), encode(answer), qos=1)
        await self._ack_events(client, result.acks)

    async def _ack_events(self, client: aiomqtt.Client, acks: dict[str, list[str]]) -> None:
        """Tell each store which of its events are committed (decision 0028), QoS 1.

        Lost on the way (this worker dies, the broker crashes), the store sends the
        events again after its timeout; they are stored by id, so that is harmless."""
        now = self._clock.now_ms()
        sends = [
            client.publish(topics.ack(store_id), encode(EventsAck(ids=ids[i:i + ACK_MAX_IDS],
                                                                  ts=now)), qos=1)
            for store_id, ids in acks.items()
            for i in range(0, len(ids), ACK_MAX_IDS)
        ]
        await asyncio.gather(*sends)  # one round trip for all stores, not one each
        self.metrics.events_acked.inc(sum(len(ids) for ids in acks.values()))

    def _count(self, result: BatchResult) -> None:
        m = self.metrics
        for channel, n in result.channels.items():
            m.messages.labels(channel=channel).inc(n)
        for reason, n in result.outcome.rejected.items():
            m.rejected.labels(reason=reason).inc(n)
        m.events_stored.inc(result.outcome.events_stored)
        m.duplicates.inc(result.outcome.duplicates)
        m.stale.inc(result.outcome.stale)


async def run_ingest(
    settings: CloudSettings,
    *,
    registry: CollectorRegistry,
    stop_event: asyncio.Event,
    clock: Clock | None = None,
    hooks: PostCommitHooks | None = None,
    drain_s: float = DRAIN_S,
) -> None:
    """Run one ingest worker until ``stop_event`` is set (the demo and the CLI use this)."""
    worker = IngestWorker(settings, registry=registry, clock=clock, hooks=hooks, drain_s=drain_s)
    await worker.run(stop_event)


def _as_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode() if payload is not None else b""


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
