"""The one ack-after-commit subscriber (``storefleet.mqtt``) on a real Mosquitto broker.

What it promises, each broken on purpose: a batch is acknowledged only after its handler
returned (a subscriber cancelled or failing in between gets the batch again), in the
order it arrived; a clean stop drains and ends the session, a crash keeps it; a full
receive queue loses nothing; a backlog sent before the SUBACK, or larger than the
receive queue, drains instead of coming again whole at each restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiomqtt
import pytest

from protocols.backoff import Backoff
from protocols.broker import BrokerAddress
from storefleet.mqtt import AckSubscriber, StopReport
from storefleet.mqtt.subscriber import Batch
from tests.cloud.conftest import publish, wait_until
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

TOPIC = "t/sub/1"


def subscriber(broker: Mosquitto, handle: Callable[[Batch], Awaitable[Any]],
               **kw: Any) -> AckSubscriber:
    kw.setdefault("backoff", Backoff(min_s=0.05, max_s=0.2))  # tests restart on purpose
    return AckSubscriber(BrokerAddress.parse(broker.url, setting="test"), client_id="t-sub",
                         filters=["t/sub/#"], handle=handle, name="test", **kw)


@contextlib.asynccontextmanager
async def running(sub: AckSubscriber, stop: asyncio.Event | None = None,
                  ) -> AsyncIterator[asyncio.Task[StopReport]]:
    task = asyncio.create_task(sub.run(stop), name="test-subscriber")
    try:
        await asyncio.wait_for(sub.connected.wait(), 10)
        yield task
    finally:
        if not task.done():  # a finished one was awaited by the test
            task.cancel()  # a crash: the session is kept
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Collect:
    """A handler that keeps every payload it was given, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []

    @property
    def payloads(self) -> list[bytes]:
        return [p for batch in self.batches for p in batch]

    async def __call__(self, batch: Batch) -> None:
        self.batches.append([bytes(m.payload) for m in batch])  # type: ignore[arg-type]


def numbered(n: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [(TOPIC, f"m{i:04d}".encode()) for i in range(start, start + n)]


async def test_cancelled_before_the_handler_returned_the_batch_comes_back(
    mosquitto: Mosquitto,
) -> None:
    """Received but not committed, then the task is cancelled (a crash): nothing was
    acknowledged, so the next session with the client id gets the whole batch again."""
    taken = asyncio.Event()
    release = asyncio.Event()

    async def never_commits(batch: Batch) -> None:
        taken.set()
        await release.wait()  # the commit never finishes

    async with running(subscriber(mosquitto, never_commits)) as task:
        await publish(mosquitto.url, numbered(5))
        await asyncio.wait_for(taken.wait(), 10)
        task.cancel()
    again = Collect()
    async with running(subscriber(mosquitto, again)):
        await wait_until(lambda: len(again.payloads) >= 5)
        await asyncio.sleep(0.2)
    assert again.payloads == [p for _, p in numbered(5)]


async def test_a_failing_handler_leaves_the_batch_unacknowledged(mosquitto: Mosquitto) -> None:
    """A handler error of a ``retry_on`` type goes to ``on_error``, the session restarts
    and the broker redelivers the batch; once committed it is acknowledged for good."""

    class DatabaseDown(Exception):
        pass

    errors: list[Exception] = []
    committed = Collect()

    async def flaky(batch: Batch) -> None:
        if len(errors) < 2:
            raise DatabaseDown("simulated outage")
        await committed(batch)

    backoff = Backoff(min_s=0.05, max_s=0.2)
    attempts: list[int] = []

    def on_error(err: Exception) -> None:
        errors.append(err)
        attempts.append(backoff.attempt)

    sub = subscriber(mosquitto, flaky, on_error=on_error, retry_on=(DatabaseDown,),
                     window_s=0.2, backoff=backoff)
    async with running(sub):
        await publish(mosquitto.url, numbered(3))
        await wait_until(lambda: len(committed.payloads) >= 3)
        await asyncio.sleep(0.2)
    assert [type(e) for e in errors] == [DatabaseDown, DatabaseDown]
    # A connect whose handler then fails is no success: the backoff grows, not resets.
    assert attempts == [0, 1] and backoff.attempt == 0  # reset by the commit
    assert committed.payloads == [p for _, p in numbered(3)]
    # Acknowledged after the commit: the session has nothing left to redeliver.
    after = Collect()
    async with running(subscriber(mosquitto, after)):
        await asyncio.sleep(0.5)
    assert after.payloads == []


async def test_an_error_it_is_not_told_to_retry_ends_run(mosquitto: Mosquitto) -> None:
    async def buggy(batch: Batch) -> None:
        raise KeyError("a bug")

    async with running(subscriber(mosquitto, buggy)) as task:
        await publish(mosquitto.url, numbered(1))
        with pytest.raises(KeyError):
            await asyncio.wait_for(task, 10)


class PubackTap:
    """A TCP relay between a subscriber and the broker that reads the MQTT packets the
    subscriber sends and keeps each PUBACK's message id, in the order they went on the
    wire (the subscriber writes a batch's PUBACKs at once: a log line per PUBACK no
    longer exists to count)."""

    def __init__(self, broker: Mosquitto) -> None:
        self._broker = broker
        self.mids: list[int] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """The relay's broker URL while the block runs."""
        server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            server.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection(self._broker.host,
                                                          self._broker.port)
        for coro in (self._pipe(broker_r, client_w, tap=False),
                     self._pipe(client_r, broker_w, tap=True)):
            task = asyncio.create_task(coro, name="puback tap")
            self._tasks.add(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *,
                    tap: bool) -> None:
        pending = bytearray()
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
                if tap:
                    pending += data
                    self._take_packets(pending)
        finally:
            sink.close()

    def _take_packets(self, pending: bytearray) -> None:
        """Consume the whole MQTT packets at the start of ``pending`` (fixed header: a
        type byte, then the remaining length in up to four 7-bit groups)."""
        while len(pending) >= 2:
            length, shift, at = 0, 0, 1
            while True:
                if at >= len(pending):
                    return  # the length is not all here yet
                byte = pending[at]
                length |= (byte & 0x7F) << shift
                shift += 7
                at += 1
                if not byte & 0x80:
                    break
            if len(pending) < at + length:
                return
            if pending[0] >> 4 == 4:  # PUBACK: the message id is its body
                self.mids.append(int.from_bytes(pending[at:at + 2], "big"))
            del pending[:at + length]


async def test_pubacks_follow_the_commit_in_arrival_order(mosquitto: Mosquitto) -> None:
    """Every PUBACK on the wire after its batch's handler returned, one per message, in
    the order the messages came (MQTT 3.1.1, 4.6)."""
    tap = PubackTap(mosquitto)
    received: list[int] = []
    acked_during_handler: list[int] = []
    committed = Collect()

    async def commit(batch: Batch) -> None:
        mids = [m.mid for m in batch]
        received.extend(mids)
        acked_during_handler.extend(mid for mid in mids if mid in tap.mids)
        await asyncio.sleep(0.01)  # a commit takes a while; the next batch gathers
        acked_during_handler.extend(mid for mid in mids if mid in tap.mids)
        await committed(batch)

    async with tap.running() as url:
        sub = AckSubscriber(BrokerAddress.parse(url, setting="test"), client_id="t-sub",
                            filters=["t/sub/#"], handle=commit, name="test",
                            backoff=Backoff(min_s=0.05, max_s=0.2), window_s=0.05,
                            batch_max=20)
        async with running(sub):
            await publish(mosquitto.url, numbered(200))
            await wait_until(lambda: len(tap.mids) >= 200)
    assert committed.payloads == [p for _, p in numbered(200)]  # arrival order, once each
    assert max(len(b) for b in committed.batches) <= 20 and len(committed.batches) >= 10
    assert acked_during_handler == []  # no PUBACK before the handler returned
    assert tap.mids == received  # one PUBACK each, in the order the messages came


async def test_clean_stop_drains_then_ends_the_session(mosquitto: Mosquitto) -> None:
    """Stopped with a backlog in its session: handled and acknowledged before it goes,
    and the session is gone (what is published afterwards is not kept for it)."""
    committed = Collect()

    async def slow(batch: Batch) -> None:
        await asyncio.sleep(0.05)
        await committed(batch)

    stop = asyncio.Event()
    async with running(subscriber(mosquitto, slow, batch_max=10), stop) as task:
        await publish(mosquitto.url, numbered(100))
        await wait_until(lambda: len(committed.payloads) >= 10)
        stop.set()
        report = await asyncio.wait_for(task, 10)
    assert report.outcome == "idle"
    assert 0 < report.drained <= 90
    assert committed.payloads == [p for _, p in numbered(100)]
    await publish(mosquitto.url, numbered(20, start=100))  # no session holds these
    back = Collect()
    async with running(subscriber(mosquitto, back)):
        await asyncio.sleep(0.5)
    assert back.payloads == []


async def test_a_crash_keeps_the_session_a_clean_stop_ends_it(mosquitto: Mosquitto) -> None:
    """Cancelled, the subscriber's session queues for it; stopped cleanly even while
    disconnected (nothing to drain), the session is ended and what it held discarded
    (the senders re-send: decisions 0028, 0029)."""
    async with running(subscriber(mosquitto, Collect())):
        pass  # cancelled on leaving: a crash
    await publish(mosquitto.url, numbered(20))
    stop = asyncio.Event()
    stop.set()
    report = await subscriber(mosquitto, Collect()).run(stop)
    assert report == StopReport(outcome="not_drained", drained=0)
    back = Collect()
    async with running(subscriber(mosquitto, back)):
        await asyncio.sleep(0.5)
    assert back.payloads == []
    # The crash kept what came meanwhile, the clean stop did not.
    async with running(subscriber(mosquitto, Collect())):
        pass
    await publish(mosquitto.url, numbered(20, start=20))
    async with running(subscriber(mosquitto, back)):
        await wait_until(lambda: len(back.payloads) == 20)


async def test_a_session_it_cannot_end_is_reported(mosquitto: Mosquitto) -> None:
    mosquitto.stop()
    stop = asyncio.Event()
    stop.set()
    report = await subscriber(mosquitto, Collect()).run(stop)
    assert report.outcome == "session_kept"


async def test_a_full_receive_queue_loses_nothing(mosquitto: Mosquitto) -> None:
    """Past ``queue_max`` a QoS 1 message is dropped unacknowledged and counted; the
    session restarts and the broker sends it again."""
    dropped: list[int] = []
    committed = Collect()

    async def slow(batch: Batch) -> None:
        await asyncio.sleep(0.02)
        await committed(batch)

    sub = subscriber(mosquitto, slow, queue_max=5, batch_max=5, on_dropped=dropped.append)
    async with running(sub):
        await publish(mosquitto.url, numbered(100))
        await wait_until(lambda: set(committed.payloads) == {p for _, p in numbered(100)},
                         timeout=20)
    assert dropped and set(dropped) == {1}


async def test_publish_needs_a_session(mosquitto: Mosquitto) -> None:
    sub = subscriber(mosquitto, Collect())
    with pytest.raises(aiomqtt.MqttError, match="not connected"):
        await sub.publish(TOPIC, b"x")


async def test_a_backlog_longer_to_read_than_the_subscribe_timeout_drains(
        mosquitto: Mosquitto) -> None:
    """With no in-flight cap (as decision 0002 configures Mosquitto) the broker sends a
    persistent session's whole backlog before the SUBACK. Reading it takes longer than
    the subscribe timeout: the batches are handled and acknowledged meanwhile, and the
    wait for the SUBACK does not end the session while messages flow (before, it timed
    out, the session ended unacknowledged, and the broker sent everything again: a
    livelock, decision 0059)."""
    async with running(subscriber(mosquitto, Collect())):
        pass  # cancelled: a crash, the session queues for this client id
    backlog = [(TOPIC, f"m{i:05d}".encode() + bytes(2_000)) for i in range(6_000)]
    await publish_fast(mosquitto.url, backlog)

    committed = Collect()
    connects: list[float] = []
    errors: list[Exception] = []
    timeout_s = 0.05
    started = time.monotonic()

    async def on_connect() -> None:
        connects.append(time.monotonic() - started)

    sub = subscriber(mosquitto, committed, subscribe_timeout_s=timeout_s,
                     on_connect=on_connect, on_error=errors.append)
    task = asyncio.create_task(sub.run(), name="test-subscriber")
    try:
        await wait_until(lambda: len(committed.payloads) >= len(backlog), timeout=30)
        await wait_until(lambda: bool(connects), timeout=10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert committed.payloads == [p for _, p in backlog]  # each once, in order
    assert errors == [] and len(connects) == 1  # one session, never restarted
    assert connects[0] > timeout_s  # the SUBACK did come after the timeout
    back = Collect()
    async with running(subscriber(mosquitto, back)):
        await asyncio.sleep(0.5)
    assert back.payloads == []  # all acknowledged: the broker holds nothing more


async def publish_fast(url: str, messages: list[tuple[str, bytes]]) -> None:
    """QoS 1 publishes without waiting for each PUBACK before the next."""
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), max_inflight_messages=500) as client:
        client.pending_calls_threshold = 1_000  # a backlog on purpose: no warning each
        for at in range(0, len(messages), 500):
            await asyncio.gather(*(client.publish(t, p, qos=1)
                                   for t, p in messages[at:at + 500]))


async def test_an_overflowed_session_acks_what_it_holds_before_restarting(
        mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    """A backlog ten times ``queue_max``, read faster than it is handled: each session
    handles and acknowledges the ``queue_max`` messages that came before the first one
    it skipped, then restarts; it drains in about ten sessions, not one per batch
    (decision 0059's livelock)."""
    async with running(subscriber(mosquitto, Collect())):
        pass  # cancelled: the session queues for this client id
    backlog = numbered(1_000)
    await publish_fast(mosquitto.url, backlog)
    committed = Collect()
    dropped: list[int] = []

    async def slow(batch: Batch) -> None:
        await asyncio.sleep(0.005)  # a commit: the broker's backlog outruns it
        await committed(batch)

    sub = subscriber(mosquitto, slow, queue_max=100, batch_max=10,
                     on_dropped=dropped.append, backoff=Backoff(min_s=0.01, max_s=0.01))
    task = asyncio.create_task(sub.run(), name="test-subscriber")
    try:
        await wait_until(lambda: set(committed.payloads) == {p for _, p in backlog},
                         timeout=30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    restarts = caplog.text.count("receive queue overflowed")
    assert dropped and 0 < restarts <= 1_000 // 100 + 2  # one batch a session: ~100
