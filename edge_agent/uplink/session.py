"""Supervises the uplink: connect, birth, serve, reconnect with backoff, die cleanly.

For each session:

1. ``bd_seq`` is incremented and persisted *before* connecting, so every session's
   Last Will (``Death(bd_seq)``) and birth carry a new, higher ``bd_seq``.
2. connect (``UplinkLink``), publish the retained ``Birth``, subscribe to the downlink.
3. run together: the outbox publisher, the telemetry forwarder, the downlink handler
   (commands, ``ready``, and ``ack``: the cloud committed events, which only then
   leave the outbox, decision 0028) and the rebirth loop (device set changes,
   debounced). The first to fail ends the
   session; the others are cancelled and awaited.
4. on a clean stop: let the publisher drain the outbox (bounded), publish the
   ``Death`` ourselves (the broker sends the Will only on an unclean loss), disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from edge_agent.config import AgentConfig
from edge_agent.errors import AgentError, LinkError
from edge_agent.metrics import AgentMetrics
from edge_agent.storage import KvStore
from edge_agent.uplink.link import UplinkLink
from edge_agent.uplink.outage import Outage
from edge_agent.uplink.outbox import Outbox
from edge_agent.uplink.publisher import CloudAcks, OutboxPublisher
from edge_agent.uplink.telemetry import TelemetryForwarder
from protocols import topics
from protocols.backoff import Backoff
from protocols.clock import Clock
from protocols.codec import decode, encode
from protocols.errors import ProtocolError
from protocols.messages import Birth, BirthRefused, CloudReady, Death, EventsAck
from storefleet.mqtt.payloads import count_bad, decode_or_count

logger = logging.getLogger(__name__)

BirthFactory = Callable[[int], Birth]
DownlinkHandler = Callable[[UplinkLink, str, bytes], Awaitable[None]]

_DEATH_TIMEOUT_S = 3.0  # a clean shutdown waits at most this long for the Death's PUBACK
# An unanswered birth is sent again after cloud_ready_timeout_s to twice that, the ceiling
# doubling up to this many times it (10 s -> 240 s, as the load generator's stores).
_BIRTH_RETRY_MAX_FACTOR = 24.0


def birth_retry(timeout_s: float, *, rng: random.Random | None = None) -> Backoff:
    """The waits between births of one session that the cloud does not answer: capped
    exponential backoff with full jitter (``protocols.backoff``), never below
    ``timeout_s``. A fixed interval had every store that lost one broker (5,000 after a
    restart) publish its birth again in the same second, every interval, to an ingest
    already behind in births (decision 0057); doubling thins them out and the jitter
    spreads them (decision 0061)."""
    retry = Backoff(min_s=timeout_s, max_s=timeout_s * _BIRTH_RETRY_MAX_FACTOR, rng=rng)
    retry.next()  # the first step is min_s exactly, without jitter: start past it
    return retry


class UplinkSupervisor:
    def __init__(
        self,
        config: AgentConfig,
        *,
        kv: KvStore,
        outbox: Outbox,
        telemetry: TelemetryForwarder,
        metrics: AgentMetrics,
        clock: Clock,
        make_birth: BirthFactory,
        on_downlink: DownlinkHandler,
    ) -> None:
        self._config = config
        self._kv = kv
        self._outbox = outbox
        self._telemetry = telemetry
        self._metrics = metrics
        self._clock = clock
        self._make_birth = make_birth
        self._on_downlink = on_downlink
        acks = (
            CloudAcks(timeout_s=config.cloud_ack_timeout_s,
                      timeout_max_s=config.cloud_ack_timeout_max_s,
                      window=config.cloud_ack_window)
            if config.cloud_acks else None
        )
        self._publisher = OutboxPublisher(
            outbox, window=config.publish_window, metrics=metrics, cloud_acks=acks
        )
        self._backoff = Backoff(min_s=config.reconnect_min_s, max_s=config.reconnect_max_s)
        self._rng = random.Random()  # the birth retry's jitter: each store its own
        # A clustered broker: each session connects to the next node (decision 0062).
        self._hosts = config.cloud.rotation(seed=config.store_id)
        self._rebirth = asyncio.Event()
        self._cloud_ready = asyncio.Event()
        self._link: UplinkLink | None = None
        self._outage = Outage("uplink", clock=clock)
        self.bd_seq = 0
        # The cloud's refusal of this store's birth, until a birth is accepted (an alarm:
        # nothing drains while it lasts).
        self.birth_refusal: BirthRefused | None = None

    @property
    def connected(self) -> bool:
        return self._link is not None

    @property
    def cloud_ready(self) -> bool:
        """The cloud answered this session's birth (``ready``)."""
        return self._cloud_ready.is_set()

    @property
    def link(self) -> UplinkLink | None:
        """The current session's link (None while disconnected), for unsolicited reports."""
        return self._link

    def request_rebirth(self) -> None:
        """Publish a new birth soon (debounced), e.g. when the device set changed."""
        self._rebirth.set()

    async def publish_birth(self) -> None:
        """Publish a birth now on the current session (no-op while disconnected)."""
        if self._link is not None:
            await self._send_birth(self._link)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a session up until ``stop`` is set; then end it cleanly."""
        while not stop.is_set():
            self.bd_seq = await self._kv.incr("bd_seq")
            self._metrics.bd_seq.set(self.bd_seq)
            link = UplinkLink(
                next(self._hosts),
                store_id=self._config.store_id,
                bd_seq=self.bd_seq,
                keepalive_s=self._config.keepalive_s,
                window=self._config.publish_window,
            )
            try:
                async with link:
                    await self._serve(link, stop)
            except LinkError as err:  # link lost or not made: one warning per outage
                self._outage.lost(err, cause=link.connect_failure)
                if link.connect_failure is not None:  # not made: tls, refused or network
                    self._metrics.uplink_connect_failures.labels(
                        reason=link.connect_failure).inc()
            except AgentError as err:  # the outbox failed: a new session
                logger.warning("uplink session ended: %s", err)
            finally:
                self._link = None
                self._metrics.uplink_connected.set(0)
                # Cut off is not ready: the next session's birth must be answered again
                # (decision 0012) before the gauge says 1.
                self._cloud_ready.clear()
                self._metrics.cloud_ready.set(0)
            if stop.is_set():
                break
            delay = self._backoff.next()
            logger.debug("uplink reconnect in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _serve(self, link: UplinkLink, stop: asyncio.Event) -> None:
        historical_upto = self._outbox.last_seq  # rows up to here were enqueued before now
        self._cloud_ready.clear()
        self._metrics.cloud_ready.set(0)
        await self._send_birth(link)
        await link.subscribe(topics.store_downlink_filters(self._config.store_id))
        self._link = link
        self._metrics.uplink_connected.set(1)
        self._metrics.uplink_connects.inc()
        self._backoff.reset()
        self._outage.over()
        publisher = _task(self._publish_when_ready(link, historical_upto), "publisher")
        workers = [
            _task(self._telemetry.run(link), "telemetry"),
            _task(self._downlink(link), "downlink"),
            _task(self._rebirth_loop(link), "rebirth"),
        ]
        stopper = _task(stop.wait(), "stop-wait")
        everything = [publisher, *workers, stopper]
        try:
            done, _ = await asyncio.wait(everything, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                await self._drain(publisher)
        finally:
            for task in everything:
                task.cancel()
            results = await asyncio.gather(*everything, return_exceptions=True)
        failures = [
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
        ]
        if failures:
            raise failures[0]
        if stop.is_set():
            await self._send_death(link)

    async def _publish_when_ready(self, link: UplinkLink, historical_upto: int) -> None:
        """Drain the outbox once the cloud answered this session's birth (``ready``).

        Until then events stay safely in the outbox: after a broker restart nobody may
        be subscribed yet. No answer within the timeout: publish the birth again (the
        cloud may have missed it, e.g. it subscribed after we were born)."""
        if self._config.await_cloud_ready:
            retry = birth_retry(self._config.cloud_ready_timeout_s, rng=self._rng)
            wait_s = self._config.cloud_ready_timeout_s  # the first answer is due then
            while not self._cloud_ready.is_set():
                try:
                    await asyncio.wait_for(self._cloud_ready.wait(), wait_s)
                except TimeoutError:
                    wait_s = retry.next()
                    logger.info("no answer from the cloud to birth %d yet; born again "
                                "(next in %.2f s)", link.bd_seq, wait_s)
                    self._metrics.births_unanswered.inc()
                    await self._send_birth(link)
        await self._publisher.run(link, historical_upto=historical_upto)

    def _on_ready(self, link: UplinkLink, payload: bytes) -> None:
        try:
            ready = _decode_answer(payload)
        except ProtocolError as err:
            count_bad(err, bad=self._metrics.bad_payloads, source="cloud",
                      what="ready message", log=logger)
            return
        if isinstance(ready, BirthRefused):
            self._on_refused(link, ready)
            return
        if ready.bd_seq != link.bd_seq:
            return
        if self.birth_refusal is not None:
            logger.info("cloud accepted birth %d after refusing one", ready.bd_seq)
            self.birth_refusal = None
            self._metrics.birth_refused_alarm.set(0)
        if not self._cloud_ready.is_set():
            logger.info("cloud answered birth %d: draining the outbox", ready.bd_seq)
            self._cloud_ready.set()
            self._metrics.cloud_ready.set(1)
        else:
            # Answered again (ingest reconnected and asked for a rebirth): what it had
            # in flight may be gone with it, so send what it has not acknowledged.
            self._publisher.resend_unacked()

    def _on_refused(self, link: UplinkLink, refusal: BirthRefused) -> None:
        """Ingest could not take our birth: error, count, alarm (the outbox cannot drain).

        A refusal naming another session is old news. One naming none (ingest could not
        read it) is ours unless this session's birth was already accepted. The birth is
        published again at the ready timeout, as for no answer: whoever fixes the cloud
        (or the device) needs no restart of the store."""
        if refusal.bd_seq is None and self._cloud_ready.is_set():
            return
        if refusal.bd_seq is not None and refusal.bd_seq != link.bd_seq:
            return
        self._metrics.birth_refused.labels(reason=refusal.reason).inc()
        self._metrics.birth_refused_alarm.set(1)
        again = self.birth_refusal is not None and self.birth_refusal.reason == refusal.reason
        self.birth_refusal = refusal
        # One ERROR per cause; its repeats (a birth every ready timeout) at INFO.
        (logger.info if again else logger.error)(
            "store %s: cloud refused birth %s (%s: %s); %d events wait in the outbox",
            self._config.store_id, refusal.bd_seq if refusal.bd_seq is not None else "?",
            refusal.reason, refusal.detail, self._outbox.depth(),
        )

    async def _drain(self, publisher: asyncio.Task[Any]) -> None:
        deadline = self._clock.monotonic() + self._config.shutdown_drain_s
        while self._outbox.depth() and not publisher.done():
            if self._clock.monotonic() >= deadline:
                logger.info("stopping with %d events still in the outbox", self._outbox.depth())
                return
            await asyncio.sleep(0.05)

    async def _downlink(self, link: UplinkLink) -> None:
        ready_topic = topics.ready(self._config.store_id)
        ack_topic = topics.ack(self._config.store_id)
        async for message in link.messages():
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if str(message.topic) == ready_topic:
                self._on_ready(link, payload)
                continue
            if str(message.topic) == ack_topic:
                await self._on_ack(payload)
                continue
            try:
                await self._on_downlink(link, str(message.topic), payload)
            except LinkError:
                raise
            except Exception as err:  # the isolation boundary of one message
                # Whatever a handler raises (a PosError, a DriverError, a bug), one bad
                # downlink message never ends the session, let alone the agent.
                self._metrics.bad_payloads.labels(source="cloud", reason="handler_error").inc()
                logger.exception("downlink %s failed: %s", message.topic, err)

    async def _on_ack(self, payload: bytes) -> None:
        """The cloud committed these events: they may leave the outbox (decision 0028)."""
        ack = decode_or_count(payload, EventsAck, bad=self._metrics.bad_payloads,
                              source="cloud", what="ack message", log=logger)
        if ack is None:
            return
        await self._publisher.on_ack(ack.ids)

    async def _rebirth_loop(self, link: UplinkLink) -> None:
        while True:
            await self._rebirth.wait()
            await asyncio.sleep(self._config.birth_debounce_s)  # coalesce a burst of changes
            self._rebirth.clear()
            await self._send_birth(link)

    async def _send_birth(self, link: UplinkLink) -> None:
        birth = self._make_birth(link.bd_seq)
        await link.publish(topics.state(self._config.store_id), encode(birth), qos=1, retain=True)
        logger.info("birth published (bd_seq %d, %d devices)", birth.bd_seq, len(birth.devices))

    async def _send_death(self, link: UplinkLink) -> None:
        death = Death(bd_seq=link.bd_seq, ts=self._clock.now_ms())
        try:
            await asyncio.wait_for(
                link.publish(
                    topics.state(self._config.store_id), encode(death), qos=1, retain=True
                ),
                _DEATH_TIMEOUT_S,
            )
            logger.info("death published (bd_seq %d)", link.bd_seq)
        except (LinkError, TimeoutError) as err:
            logger.warning("could not publish death: %s", err)


def _decode_answer(payload: bytes) -> CloudReady | BirthRefused:
    """The cloud's answer on ``ready``: ``accepted`` tells which (absent: a ready)."""
    try:
        return decode(payload, CloudReady)
    except ProtocolError:
        try:
            return decode(payload, BirthRefused)
        except ProtocolError:
            pass
        raise


def _task(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    return asyncio.create_task(coro, name=f"uplink-{name}")
