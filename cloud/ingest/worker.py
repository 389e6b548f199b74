"""The ingest worker: MQTT uplink -> database, acknowledging only what is committed.

    worker = IngestWorker(settings, registry=CollectorRegistry())
    await worker.run(stop_event)          # returns after stop_event is set

Nothing lost: the worker is an ``AckSubscriber`` (``storefleet.mqtt``, decision 0034):
a persistent session (fixed client id, QoS 1 subscriptions) that acknowledges each
message only after the transaction that stored it has committed. A crash or lost
connection before that leaves the message unacknowledged in the broker's session,
which redelivers it on reconnect; storage is idempotent, so a redelivered message
changes nothing the second time.

Batching: the first message of a batch is awaited, then more are drained for up to
``batch_window_s`` or ``batch_max`` messages; the batch is decoded and committed in one
transaction in a worker thread, and acknowledged in arrival order.

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

import aiomqtt
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from cloud.db.engine import make_engine, make_session_factory, writer
from cloud.db.migrate import upgrade
from cloud.errors import DatabaseUnavailable
from cloud.ingest.batch import BatchProcessor, BatchResult
from cloud.ingest.hooks import PostCommitHooks
from cloud.metrics import IngestMetrics
from cloud.settings import CloudSettings
from protocols import encode, topics
from protocols.backoff import Backoff
from protocols.clock import Clock, SystemClock
from protocols.messages import (
    ACK_MAX_IDS,
    BirthRefused,
    CloudReady,
    EventsAck,
    RebirthRequest,
)
from storefleet.mqtt.subscriber import DRAIN_IDLE_S, DRAIN_S, AckSubscriber, AfterAck, Batch

logger = logging.getLogger(__name__)

# 50 ms / 500 messages: large enough to amortise a commit (one fsync) over many
# messages at load, short enough that a lone event is stored within a blink.
BATCH_WINDOW_S = 0.05
BATCH_MAX = 500


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
            require_enrolment=settings.enrolment.required,
            hooks=hooks,
        )
        self._migrate = migrate
        group = settings.share_group
        self._subscriber = AckSubscriber(
            settings.mqtt,  # mqtt:// or mqtts:// (decision 0032)
            client_id=settings.ingest_client_id,
            filters=[topics.shared(f, group) if group else f
                     for f in topics.cloud_uplink_filters()],
            handle=self._handle,
            backoff=backoff or Backoff(),
            name="ingest",
            window_s=batch_window_s,
            batch_max=batch_max,
            keepalive_s=settings.keepalive_s,
            on_connect=self._on_connect,
            on_error=self._on_error,
            retry_on=(DatabaseUnavailable,),
            drain_s=drain_s,
            drain_idle_s=drain_idle_s,
        )
        self.connected = self._subscriber.connected  # set while subscribed; tests wait on it
        self._rebirth: asyncio.Task[None] | None = None

    async def run(self, stop_event: asyncio.Event | None = None) -> None:
        """Supervise the connection until ``stop_event`` is set (or the task is cancelled)."""
        stop = stop_event or asyncio.Event()
        if self._migrate:
            # Blocking DDL: keep it off the event loop (the API may share the loop).
            await asyncio.to_thread(upgrade, self._engine)
        try:
            report = await self._subscriber.run(stop)
            self.metrics.drained.inc(report.drained)
            self.metrics.stops.labels(outcome=report.outcome).inc()
        finally:
            self.metrics.connected.set(0)
            if self._rebirth is not None:
                self._rebirth.cancel()
            if self._own_engine:
                self._engine.dispose()

    async def _on_connect(self) -> None:
        logger.info("ingest: connected to %s as %s (share group %s)",
                    self.settings.mqtt.url, self.settings.ingest_client_id,
                    self.settings.share_group)
        # Births are retained, but a broker does not deliver retained messages to
        # shared subscriptions, and births published before this worker's session
        # existed were never queued for it. Ask every store to be born again
        # (Sparkplug's rule for a host application coming online); a store answers
        # with its current birth, which ingest applies idempotently by bd_seq.
        # Not awaited here: the broker's PUBACK comes after all it holds for this
        # session (a backlog after an outage), and storing must not wait for that.
        self._rebirth = asyncio.create_task(self._ask_rebirth(), name="ingest: rebirth")
        self.metrics.connected.set(1)

    async def _ask_rebirth(self) -> None:
        request = encode(RebirthRequest(ts=self._clock.now_ms()))
        try:
            await self._subscriber.publish(topics.fleet("rebirth"), request, qos=1)
        except aiomqtt.MqttError as err:
            # The connection went: the subscriber counts that (on_error), and the next
            # connect asks again.
            logger.warning("ingest: rebirth request not sent: %s", err)

    def _on_error(self, err: Exception) -> None:
        self.metrics.connected.set(0)
        if isinstance(err, DatabaseUnavailable):
            self.metrics.db_errors.inc()
            logger.error("ingest: %s; not acknowledging, will reconnect", err)
        else:
            self.metrics.connect_failures.inc()
            logger.warning("ingest: broker connection failed or lost: %s", err)

    async def _handle(self, batch: Batch) -> AfterAck:
        """Store the batch (the subscriber acknowledges it when this returns); then tell
        the stores what is committed."""
        raw = [(m.topic, m.payload) for m in batch]
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
        self._count(result)

        async def tell_stores() -> None:
            await self._answer_births(result)
            await self._ack_events(result.acks)

        return tell_stores

    async def _answer_births(self, result: BatchResult) -> None:
        publish = self._subscriber.publish
        for store_id, bd_seq in result.births:
            # The birth is stored, so this worker is subscribed: tell the store it may
            # drain its outbox (a store waits for this after every connect).
            ready = CloudReady(bd_seq=bd_seq, ts=self._clock.now_ms())
            await publish(topics.ready(store_id), encode(ready), qos=1)
        for refused in result.refused:
            # Not stored, so never ready: say so, or the store waits for ever with its
            # outbox growing (decision 0024). The store logs, counts and alarms on it.
            self.metrics.births_refused.labels(reason=refused.reason).inc()
            logger.warning("ingest: refused the birth of store %s (bd_seq %s): %s",
                           refused.store_id, refused.bd_seq, refused.detail)
            answer = BirthRefused(bd_seq=refused.bd_seq, reason=refused.reason,
                                  detail=refused.detail, ts=self._clock.now_ms())
            await publish(topics.ready(refused.store_id), encode(answer), qos=1)

    async def _ack_events(self, acks: dict[str, list[str]]) -> None:
        """Tell each store which of its events are committed (decision 0028), QoS 1.

        Lost on the way (this worker dies, the broker crashes), the store sends the
        events again after its timeout; they are stored by id, so that is harmless."""
        now = self._clock.now_ms()
        sends = [
            self._subscriber.publish(
                topics.ack(store_id), encode(EventsAck(ids=ids[i:i + ACK_MAX_IDS], ts=now)),
                qos=1)
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
        for kind, n in result.outcome.stored_kinds.items():
            m.events_stored_by_kind.labels(kind=kind).inc(n)
        for delay_s in result.outcome.live_delays_s:
            m.event_delay.observe(delay_s)
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

