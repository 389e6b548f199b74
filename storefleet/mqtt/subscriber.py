"""One MQTT subscriber that acknowledges a message only after what it carries is committed.

    subscriber = AckSubscriber(address, client_id="s1-agent", filters=["store/#"],
                               handle=commit, backoff=Backoff(), name="local bus")
    await subscriber.run()          # until cancelled; or run(stop) for a clean stop

Used by the store box's local bus (``edge_agent.localbus.consumer``: device messages to
the outbox) and the cloud's ingest (``cloud.ingest.worker``: store messages to the
database); decision 0034. Before, each wrote it over aiomqtt's private client.

Nothing lost across a crash: the session is persistent (a fixed client id,
``clean_session=False``), the subscriptions are QoS 1, and automatic acknowledgement is
off. Messages are taken in batches (the first awaited, then more for up to ``window_s``
or ``batch_max`` messages) and the batch goes to ``handle``, which commits it. Only when
``handle`` returns are the batch's QoS 1 messages acknowledged (PUBACK), in arrival
order (MQTT 3.1.1 wants PUBACKs in the order the PUBLISHes came). ``handle`` may return
what to do once the batch is acknowledged (ingest tells the stores which events it
committed): it is started, in batch order, and not awaited: the broker's PUBACK to a
publish made in it queues behind every message the broker is sending this session (a
whole backlog after an outage), so awaiting it made each batch wait for the stream to be
read to its end (decision 0055). At most ``after_max`` run at once (beyond, the oldest
is awaited); an error in one ends the session as a broker error does. If ``handle``
raises, nothing of the batch is acknowledged: the session ends,
the broker redelivers the batch to the next one, and the error goes to ``on_error``
(the caller logs and counts it) when its type is one of ``retry_on``; any other error
ends ``run`` (a bug, for the supervisor to count and restart).

Batches are handled from the connect on, not from the SUBACK: the broker sends a
persistent session what it queued as soon as it accepts the connection, and with no
in-flight cap (decision 0002) all of it before the SUBACK; those messages are the
session's and are acknowledged as any other. The SUBACK (and a clean stop's UNSUBACK)
times out only when nothing at all came for ``subscribe_timeout_s``, so a backlog that
takes longer to read does not end the session (it did: nothing was acknowledged and the
broker sent it all again, every time; amendment to decision 0058). ``on_connect`` runs,
and ``connected`` is set, once subscribed.

Reconnects use the shared capped backoff (``protocols.backoff``). A working session
resets it; a session that connected but whose handler failed does not, so a handler
that keeps failing (a database down) is retried ever more slowly, not in a loop.

Bounded memory (``queue_max``): beyond it a QoS 0 message is dropped and a QoS 1 message
is left unacknowledged (both reported to ``on_dropped``); once a QoS 1 message was
skipped every later one is dropped too, and once the batches have taken what the inbox
held (all of it came before the first skipped one: their PUBACKs stay in arrival order)
the session is restarted, so the broker redelivers what was skipped (it never left the
broker). Restarting right after the batch in hand made a session ack one batch of a
backlog the broker then sent whole again (decision 0059's livelock, 0058's amendment);
now it acks ``queue_max``.

A batch holds paho's own ``MQTTMessage`` objects (``topic``, ``payload``, ``qos``,
``mid``), taken from paho's ``on_message`` into this module's inbox, not through
aiomqtt's message iterator: that made two more objects per message (aiomqtt's ``Message``
and ``Topic``) and a task and a queue hand-off for each, a quarter of ingest's cost per
message at a backlog's pace. A batch's PUBACKs go to the socket as one write, not one
each (decision 0058).

A clean stop (``run(stop)`` with ``stop`` set) hands over (decision 0029): unsubscribe
(the broker routes new messages elsewhere; what it queued for this session it still
sends), keep handling and acknowledging until nothing came for ``drain_idle_s`` or
``drain_s`` passed, disconnect, then connect once with ``clean_session=True`` so the
broker discards the session. ``run`` returns a ``StopReport``. A cancelled ``run`` (a
crash, the agent's shutdown) keeps the session: the broker queues for it.

aiomqtt (2.5) has no public switch for manual acknowledgement (empicano/aiomqtt#345, the
draft PR #346); paho has (``manual_ack_set`` / ``ack``, paho-mqtt 2.0), and aiomqtt's
``_client`` is the paho client. This module is the only place that reaches through it:
``_manual_ack``, ``_ack`` and ``_receive`` (paho's ``on_message`` to the inbox; aiomqtt's
``_disconnected``, the future its own iterator waits on, ends a wait when the connection
drops). Remove ``_manual_ack`` and ``_ack`` when aiomqtt ships its own switch; ``_receive``
stays while reading through aiomqtt costs what decision 0058 measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import aiomqtt
from paho.mqtt.client import MQTTMessage
from paho.mqtt.enums import MessageType, MQTTErrorCode

from protocols.backoff import Backoff
from protocols.broker import BrokerAddress

logger = logging.getLogger(__name__)

T = TypeVar("T")

Received = MQTTMessage
"""A received message as paho parsed it: ``topic`` (str), ``payload``, ``qos``, ``mid``."""
Batch = list[Received]
AfterAck = Callable[[], Coroutine[Any, Any, None]]
"""What to do once a batch is acknowledged (e.g. tell the senders it is committed)."""
BatchHandler = Callable[[Batch], Awaitable[AfterAck | None]]

StopOutcome = Literal["idle", "deadline", "not_drained", "session_kept"]

# A clean stop drains for at most this long (a scaled-down pod has a grace period,
# Kubernetes' default is 30 s; the drain must end well within it) ...
DRAIN_S = 5.0
# ... and ends as soon as nothing came for this long after the unsubscribe: the broker
# sends what it queued for us as fast as we acknowledge, so a pause this long on a
# working connection means the session is empty (a round trip is milliseconds).
DRAIN_IDLE_S = 0.5
# AfterAcks running at once: a batch's publishes complete when the broker's PUBACKs come,
# after everything it queued for this session before them; 1,024 batches of 500 cover a
# backlog of half a million messages, at a few KiB each.
AFTER_MAX = 1024
# The SUBACK (UNSUBACK) must come within this long of the SUBSCRIBE or of the last
# message received before it (aiomqtt's default timeout): a broker that neither answers
# nor sends is gone; one that is sending a backlog first is not (see ``_acked``).
SUBSCRIBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class StopReport:
    """How a clean stop went: ``idle`` (all drained), ``deadline`` (the rest discarded),
    ``not_drained`` (stopped while disconnected), ``session_kept`` (the broker could
    not be told to end the session); ``drained``: messages handled after unsubscribing."""

    outcome: StopOutcome
    drained: int


class NotConnected(aiomqtt.MqttError):
    """``publish`` while no session is up."""


class _Overflow(Exception):
    """The receive queue overflowed and what it held is handled: reconnect so the broker
    redelivers what we skipped."""


class _Inbox:
    """What paho received this session and no batch took yet: paho's ``on_message`` puts
    (in the event loop's thread: aiomqtt reads the socket there), ``take`` empties.
    Bounded by us (``limit``): beyond it a message is reported to ``on_dropped`` and a
    skipped QoS 1 message flags the session for a reconnect, and every later message is
    then dropped too (reported as well)."""

    def __init__(self, *, limit: int | None, on_dropped: Callable[[int], None]) -> None:
        self.limit = limit
        self.overflowed = False
        self._on_dropped = on_dropped
        self._messages: deque[Received] = deque()
        self.received = 0  # messages paho handed over, dropped ones too: the link is alive
        self._waiter: asyncio.Future[None] | None = None
        self._want = 0  # wake the waiter once this many are here (one wake per batch)

    def __len__(self) -> int:
        return len(self._messages)

    def put(self, _client: Any, _userdata: Any, message: Received) -> None:
        """paho's ``on_message``."""
        self.received += 1
        if self.overflowed or (self.limit is not None and len(self._messages) >= self.limit):
            self._on_dropped(message.qos)
            if message.qos > 0:
                self.overflowed = True  # unacknowledged: redelivered after a reconnect
            return
        self._messages.append(message)
        waiter = self._waiter
        if waiter is not None and len(self._messages) >= self._want and not waiter.done():
            waiter.set_result(None)

    async def wait(self, count: int, *, within_s: float | None,
                   until: set[asyncio.Future[Any]]) -> None:
        """Until ``count`` messages are here, ``within_s`` passed or one of ``until`` is
        done. Takes nothing: cancelled, it loses no message."""
        if len(self._messages) >= count:
            return
        self._want = count
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait({waiter, *until}, timeout=within_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiter = None
            waiter.cancel()

    def take(self, most: int) -> Batch:
        """Up to ``most`` messages, in arrival order."""
        messages = self._messages
        return [messages.popleft() for _ in range(min(most, len(messages)))]


class AckSubscriber:
    def __init__(
        self,
        address: BrokerAddress,
        *,
        client_id: str,
        filters: Sequence[str],
        handle: BatchHandler,
        backoff: Backoff,
        name: str,
        window_s: float = 0.0,
        batch_max: int = 500,
        keepalive_s: int = 60,
        on_connect: Callable[[], Awaitable[None]] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        retry_on: tuple[type[Exception], ...] = (),
        queue_max: int | None = None,
        on_dropped: Callable[[int], None] | None = None,
        drain_s: float = DRAIN_S,
        drain_idle_s: float = DRAIN_IDLE_S,
        after_max: int = AFTER_MAX,
        subscribe_timeout_s: float = SUBSCRIBE_TIMEOUT_S,
        mqtt_logger: logging.Logger | None = None,
    ) -> None:
        """``name`` starts this subscriber's log lines; ``on_connect`` runs once subscribed
        (``publish`` works in it); ``on_error`` gets every broker error (``MqttError``)
        and every handler error of a ``retry_on`` type before the reconnect;
        ``subscribe_timeout_s``: how long a SUBACK may take with nothing arriving."""
        self._address = address
        # A clustered broker: each connect goes to the next node (decision 0062).
        self._hosts = address.rotation(seed=client_id)
        self._client_id = client_id
        self._filters = list(filters)
        self._handle = handle
        self._backoff = backoff
        self._name = name
        self._window_s = window_s
        self._batch_max = batch_max
        self._keepalive_s = keepalive_s
        self._on_connect = on_connect
        self._on_error = on_error
        self._retry_on: tuple[type[Exception], ...] = (aiomqtt.MqttError, *retry_on)
        self._queue_max = queue_max
        self._on_dropped = on_dropped or (lambda qos: None)
        self._drain_s = drain_s
        self._drain_idle_s = drain_idle_s
        self._after_max = after_max
        self._subscribe_timeout_s = subscribe_timeout_s
        self._mqtt_logger = mqtt_logger
        self.connected = asyncio.Event()  # set while subscribed
        self._client: aiomqtt.Client | None = None
        self._inbox: _Inbox | None = None  # the connection's, set by _connect
        self._handler_failed = False  # the last session ended in a handler error
        self._afters: deque[asyncio.Task[None]] = deque()  # AfterAcks running, oldest first

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1,
                      retain: bool = False) -> None:
        """Publish on this subscriber's connection; ``NotConnected`` while it is down."""
        client = self._client
        if client is None:
            raise NotConnected(f"{self._name}: not connected; cannot publish {topic}")
        await client.publish(topic, payload, qos=qos, retain=retain)

    async def run(self, stop: asyncio.Event | None = None) -> StopReport:
        """Subscribe and handle batches, reconnecting with backoff, until ``stop`` is set
        (then hand over and return how) or the task is cancelled (the session is kept)."""
        drained: StopReport | None = None  # how the drain went, once one completed
        while stop is None or not stop.is_set():
            try:
                drained = await self._session(stop)
            except _Overflow:
                logger.warning("%s: receive queue overflowed; reconnecting for redelivery",
                               self._name)
                continue
            except self._retry_on as err:
                if self._on_error is not None:
                    self._on_error(err)
            if stop is None or not stop.is_set():
                delay = self._backoff.next()
                logger.debug("%s: reconnecting in %.1f s", self._name, delay)
                await _wait(stop, delay)
        # Only a clean stop gets here (a cancelled task or an error does not): end the
        # session so the broker parks nothing for a client that is not coming back.
        return await self._end_session(drained)

    # ---- one session ----------------------------------------------------------------------

    async def _session(self, stop: asyncio.Event | None) -> StopReport:
        """Connect, subscribe, handle until ``stop``; then drain and say how it went.
        Batches are handled while the SUBACK is pending (see the module docstring)."""
        async with self._connect(clean_session=False) as client:
            inbox = self._inbox
            assert inbox is not None  # set by _connect
            subscribing = asyncio.create_task(self._acked(
                lambda: client.subscribe([(f, 1) for f in self._filters], timeout=math.inf),
                client, inbox, "SUBACK"), name=f"{self._name}: subscribe")
            subscribed = False
            try:
                while stop is None or not stop.is_set():
                    if subscribing.done() and not subscribed:
                        await self._subscribed(client, subscribing)
                        subscribed = True
                    pending = set() if subscribing.done() else {subscribing}
                    batch = await self._next_batch(client, inbox, stop, until=pending)
                    if batch:
                        await self._settle(client, batch)
                    if inbox.overflowed and not inbox:  # what came before the gap is in
                        raise _Overflow
                # Stopped before subscribed: the UNSUBSCRIBE must follow the SUBACK
                # (what arrives meanwhile waits in the inbox for the drain).
                await subscribing
                return await self._drain(client, inbox)
            finally:
                subscribing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await subscribing  # its error, if any, was this session's: raised
                self._client = None
                self.connected.clear()
                # The session is going: a publish on it cannot complete (what it would
                # have told the senders they learn from their re-sends, decision 0028).
                afters, self._afters = list(self._afters), deque()
                for after in afters:
                    after.cancel()
                for after in afters:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await after
                # What the inbox still holds was not acknowledged: the broker redelivers
                # it to the next session.

    async def _subscribed(self, client: aiomqtt.Client,
                          subscribing: asyncio.Task[Any]) -> None:
        """The SUBACK came (or the subscribe failed: raise that)."""
        subscribing.result()
        self._client = client
        if self._on_connect is not None:
            await self._on_connect()
        self.connected.set()
        if not self._handler_failed:
            self._backoff.reset()  # a working connection (see the module docstring)

    async def _acked(self, call: Callable[[], Awaitable[T]], client: aiomqtt.Client, inbox: _Inbox,
                     what: str) -> T:
        """``call`` (a subscribe or an unsubscribe, made without aiomqtt's timeout), but
        ``MqttError`` once the connection dropped or nothing at all came for
        ``subscribe_timeout_s``: the broker answers after what it queued before the
        answer, so while messages keep coming the answer is still on its way."""
        answer: asyncio.Future[T] = asyncio.ensure_future(call())
        disconnected = _disconnected(client)
        ends: set[asyncio.Future[Any]] = {answer, disconnected}
        try:
            while True:
                seen = inbox.received
                await asyncio.wait(ends, timeout=self._subscribe_timeout_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                if answer.done():
                    return answer.result()
                if disconnected.done():
                    raise aiomqtt.MqttError(f"disconnected while waiting for the {what}")
                if inbox.received == seen:
                    raise aiomqtt.MqttError(f"no {what} and no message within "
                                            f"{self._subscribe_timeout_s} s")
                logger.debug("%s: %d messages before the %s so far", self._name,
                             inbox.received, what)
        finally:
            answer.cancel()

    @contextlib.asynccontextmanager
    async def _connect(self, *, clean_session: bool) -> AsyncIterator[aiomqtt.Client]:
        client = aiomqtt.Client(
            **next(self._hosts).client_options(),  # mqtt(s)://, the next node (0032, 0062)
            identifier=self._client_id,
            # persistent session: the broker keeps what we missed (True only to end it)
            clean_session=clean_session,
            keepalive=self._keepalive_s,
            protocol=aiomqtt.ProtocolVersion.V311,
            logger=self._mqtt_logger,
        )
        _manual_ack(client)
        self._inbox = _Inbox(limit=self._queue_max, on_dropped=self._on_dropped)
        _receive(client, self._inbox)
        async with client:
            yield client

    async def _settle(self, client: aiomqtt.Client, batch: Batch) -> None:
        """Handle (commit) the batch, then, and only then, acknowledge it."""
        try:
            after = await self._handle(batch)
        except Exception:
            self._handler_failed = True
            raise
        rc = _ack(client, batch)  # in arrival order
        logger.debug("%s: acknowledged %d messages", self._name, len(batch))
        if rc != 0:  # the connection is going: the broker redelivers the batch
            logger.warning("%s: could not ack a batch of %d (rc %s)", self._name,
                           len(batch), rc)
        self._handler_failed = False
        self._backoff.reset()
        while self._afters and self._afters[0].done():
            self._afters.popleft().result()  # an error in one is this session's
        if after is not None:
            self._afters.append(asyncio.create_task(after(), name=f"{self._name}: after ack"))
            while len(self._afters) > self._after_max:
                await self._afters.popleft()

    async def _next_batch(self, client: aiomqtt.Client, inbox: _Inbox,
                          stop: asyncio.Event | None, *, wait_s: float | None = None,
                          until: set[asyncio.Task[Any]] | None = None) -> Batch:
        """A batch, once the first message came; empty if ``stop`` was set, one of
        ``until`` completed or nothing came within ``wait_s`` first. ``MqttError`` once
        the connection dropped."""
        stopped = asyncio.ensure_future(stop.wait()) if stop is not None else None
        ends: set[asyncio.Future[Any]] = {*(until or ())}
        try:
            # The first message, then more for up to ``window_s``, or ``batch_max``.
            until_: set[asyncio.Future[Any]] = {_disconnected(client), *ends}
            if stopped is not None:
                until_.add(stopped)
            await self._wait(client, inbox, 1, within_s=wait_s, until=until_)
            if not inbox:
                return []
            deadline = time.monotonic() + self._window_s
            while len(inbox) < self._batch_max:
                remaining = deadline - time.monotonic()
                if (remaining <= 0 or (stop is not None and stop.is_set())
                        or any(end.done() for end in ends)):
                    break
                await self._wait(client, inbox, self._batch_max, within_s=remaining,
                                 until=until_)
        finally:
            if stopped is not None:
                stopped.cancel()
        return inbox.take(self._batch_max)

    async def _wait(self, client: aiomqtt.Client, inbox: _Inbox, count: int, *,
                    within_s: float | None, until: set[asyncio.Future[Any]]) -> None:
        await inbox.wait(count, within_s=within_s, until=until)
        disconnected = _disconnected(client)
        if disconnected.done():
            # As aiomqtt's iterator: the session is over; what the inbox holds was not
            # acknowledged and is redelivered to the next one.
            cause = None if disconnected.cancelled() else disconnected.exception()
            raise aiomqtt.MqttError("Disconnected during message iteration") from cause

    # ---- a clean stop (decision 0029) -------------------------------------------------------

    async def _drain(self, client: aiomqtt.Client, inbox: _Inbox) -> StopReport:
        """Still connected: unsubscribe, then handle and acknowledge what the broker had
        already routed to this session until idle or ``drain_s`` passed."""
        started = time.monotonic()
        deadline = started + self._drain_s
        # After the UNSUBACK the broker routes the group's new messages to the other
        # members only; what it queued for us it still delivers (Mosquitto does).
        await self._acked(lambda: client.unsubscribe(self._filters, timeout=math.inf),
                          client, inbox, "UNSUBACK")
        drained, idle = 0, False
        while (remaining := deadline - time.monotonic()) > 0:
            batch = await self._next_batch(client, inbox, None,
                                           wait_s=min(self._drain_idle_s, remaining))
            if not batch:
                idle = remaining > self._drain_idle_s
                break
            await self._settle(client, batch)
            drained += len(batch)
        while self._afters:  # what the senders should hear, before the session ends
            await self._afters.popleft()
        logger.info("%s: clean stop: unsubscribed, drained %d messages in %.1f s (%s)%s",
                    self._name, drained, time.monotonic() - started,
                    "idle" if idle else "deadline",
                    "" if idle else "; the rest of the session is discarded and re-sent "
                    "by the senders")
        return StopReport(outcome="idle" if idle else "deadline", drained=drained)

    async def _end_session(self, drained: StopReport | None) -> StopReport:
        """End this client id's persistent session at the broker (MQTT 3.1.1: connect
        with ``clean_session=True``, disconnect): nothing is queued for it any more."""
        outcome: StopOutcome
        if drained is None:
            # Stopped while disconnected (or the drain failed): the session still holds
            # its subscriptions and what the broker queued meanwhile; ending it discards
            # that, and the senders re-send it.
            outcome = "not_drained"
            logger.warning("%s: clean stop without a drain (not connected): ending the "
                           "session; the senders re-send what it held", self._name)
        else:
            outcome = drained.outcome
        try:
            async with self._connect(clean_session=True):
                pass
        except aiomqtt.MqttError as err:
            outcome = "session_kept"
            logger.warning("%s: could not end the session at the broker (%s): if it still "
                           "subscribes, the broker parks messages for it until this client "
                           "id returns; the senders re-send them meanwhile", self._name, err)
        return StopReport(outcome=outcome, drained=drained.drained if drained else 0)


def _manual_ack(client: aiomqtt.Client) -> None:
    """Turn paho's automatic PUBACK off (see the module docstring for why ``_client``);
    without it paho acknowledges a message as soon as it is queued, before it is
    committed, and a crash then loses it."""
    client._client.manual_ack_set(True)


# A PUBACK: the packet type, remaining length 2, the message id (MQTT 3.1.1, 3.4).
_PUBACK = struct.Struct("!BBH")


def _ack(client: aiomqtt.Client, batch: Batch) -> int:
    """PUBACK the batch's QoS 1 messages, in arrival order, as one write (paho's ``ack``
    queues one packet and one socket write each: a tenth of ingest's cost per message,
    decision 0058); QoS 2 (never subscribed to here) through paho's ``ack``. paho's
    result code (0: queued)."""
    paho = client._client
    pubacks = b"".join(_PUBACK.pack(MessageType.PUBACK, 2, m.mid)
                       for m in batch if m.qos == 1)
    rc = MQTTErrorCode.MQTT_ERR_SUCCESS
    if pubacks:
        rc = paho._packet_queue(MessageType.PUBACK, pubacks, 0, 1)
    for message in batch:
        if message.qos == 2:
            rc = rc or paho.ack(message.mid, message.qos)
    return int(rc)


def _receive(client: aiomqtt.Client, inbox: _Inbox) -> None:
    """paho's messages to ``inbox`` instead of aiomqtt's queue (see the module docstring)."""
    client._client.on_message = inbox.put


def _disconnected(client: aiomqtt.Client) -> asyncio.Future[None]:
    """aiomqtt's future that is done once the connection dropped (its iterator waits on
    it too); replaced at each connect, so read it each time."""
    return client._disconnected


async def _wait(stop: asyncio.Event | None, seconds: float) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
