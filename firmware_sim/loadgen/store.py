"""One simulated store box's uplink: the sessions the real agent runs
(``edge_agent/uplink/session.py``), on the same wire, without the rest of the box.

Each session: ``bd_seq`` + 1; connect with client id = store id, a persistent session
and the Last Will ``Death(bd_seq)`` (retained, QoS 1, on ``state``); publish the retained
``Birth``; subscribe to the store's downlink. Then, together: the publisher (waits for
the cloud's ``ready`` for this ``bd_seq``, born again when none comes within
``ready_timeout_s`` and after each jittered, doubling wait; then sends the outbox, QoS 1,
at most ``window`` events awaiting the cloud's ``ack``, each due again after
``ack_timeout_s``), the downlink (``ready``, ``ack``, commands answered on ``cmd-res``,
promotion announcements, fleet rebirth), and telemetry (QoS 0). A lost session is
followed by a reconnect with jittered backoff (``protocols.backoff``); ``storm()`` cuts
the connection as a network would, so the broker publishes the Will; ``stop`` ends it
cleanly with a ``Death`` of our own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from dataclasses import dataclass
from typing import Any

import aiomqtt

from firmware_sim.loadgen.identity import StoreIdentity
from firmware_sim.loadgen.outbox import MemoryOutbox
from firmware_sim.loadgen.snapshots import SnapshotSource
from firmware_sim.loadgen.stats import FleetStats
from firmware_sim.loadgen.traffic import CABINET, CART, FRIDGE, TILL, Traffic
from protocols import topics
from protocols.backoff import Backoff
from protocols.clock import Clock
from protocols.codec import decode, encode
from protocols.errors import ProtocolError
from protocols.messages import (
    AGENT_COMMANDS,
    Birth,
    BirthRefused,
    CloudReady,
    Command,
    CommandResult,
    CommandStatus,
    Death,
    DeviceInfo,
    Event,
    EventsAck,
    PromotionsAnnouncement,
)

logger = logging.getLogger(__name__)

AGENT_VERSION = "loadgen-1"
_DEATH_TIMEOUT_S = 3.0  # as the agent: a clean stop waits this long for the Death's PUBACK


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """How every simulated store of a fleet behaves (the agent's uplink settings)."""

    devices: int = 4  # devices named in the birth
    tele_interval_s: float = 30.0
    keepalive_s: int = 60
    timeout_s: float = 30.0  # CONNACK / SUBACK wait: thousands connect at once
    window: int = 32  # QoS 1 publishes in flight, and events awaiting the cloud's ack
    cloud: bool = True  # a cloud answers births and acks events (else: PUBACK is enough)
    ack_timeout_s: float = 30.0  # as the agent's cloud_ack_timeout_s, doubled per resend
    ack_timeout_max_s: float = 600.0
    ready_timeout_s: float = 15.0  # no ready by then: born again, waiting twice as long
    ready_timeout_max_s: float = 240.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0


class SimStore:
    def __init__(self, identity: StoreIdentity, *, settings: StoreSettings, stats: FleetStats,
                 clock: Clock, rng: random.Random,
                 snapshots: SnapshotSource | None = None) -> None:
        self.identity = identity
        self.store_id = identity.store_id
        self._settings = settings
        self._stats = stats
        self._clock = clock
        self._snapshots = snapshots
        self.outbox = MemoryOutbox()
        self.traffic = Traffic(self.store_id, rng=rng)
        self.bd_seq = 0
        self.connected = False
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()  # new events in the outbox, an ack, ready again
        self._drop = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._historical_upto = 0  # events up to this seq were made before the session
        self._rng = rng
        self._backoff = Backoff(min_s=settings.reconnect_min_s, max_s=settings.reconnect_max_s,
                                rng=rng)
        self._announced: PromotionsAnnouncement | None = None
        self._snapshot_tasks: set[asyncio.Task[None]] = set()
        self._devices = _devices(settings.devices)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def make_event(self) -> Event:
        """The store makes its next event: into the outbox, sent when it can be."""
        event = self.traffic.event(self._clock.now_ms())
        self.outbox.add(event, topics.evt(self.store_id, event.kind))
        self._stats.produced[event.kind] += 1
        self._wake.set()
        return event

    def storm(self) -> None:
        """Cut the connection now, as a network would (the broker sends the Will)."""
        if self.connected:
            self._drop.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Sessions until ``stop``; the last one ends with our own ``Death``."""
        while not stop.is_set():
            self.bd_seq += 1
            try:
                await self._session(stop)
            except aiomqtt.MqttError as err:
                reason = ("storm_drop" if self._drop.is_set() else
                          "connect" if not self.connected else "session_lost")
                self._stats.count(reason)
                logger.debug("store %s: %s: %s", self.store_id, reason, err)
            finally:
                self._lost()
                self._client = None
            if stop.is_set():
                break
            self._drop.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._backoff.next())

    # ---- one session --------------------------------------------------------------------

    async def _session(self, stop: asyncio.Event) -> None:
        s = self._settings
        will = aiomqtt.Will(topics.state(self.store_id), encode(Death(bd_seq=self.bd_seq)),
                            qos=1, retain=True)
        client = aiomqtt.Client(
            **self.identity.broker.client_options(), identifier=self.store_id, will=will,
            # Persistent, as the agent: commands sent during a short outage are queued.
            clean_session=False, keepalive=s.keepalive_s, timeout=s.timeout_s,
            max_inflight_messages=s.window)
        client.pending_calls_threshold = s.window + 16  # aiomqtt warns above 10 otherwise
        async with client:
            self._client = client
            self._historical_upto = self.traffic.last_seq
            await self._birth(client)
            await client.subscribe([(f, 1) for f in topics.store_downlink_filters(self.store_id)])
            self.connected = True
            self._stats.connected += 1
            self._stats.connects += 1
            self._backoff.reset()
            self.outbox.new_session()
            tasks = [
                asyncio.create_task(self._publisher(client), name=f"{self.store_id}-publisher"),
                asyncio.create_task(self._downlink(client), name=f"{self.store_id}-downlink"),
                asyncio.create_task(self._telemetry(client), name=f"{self.store_id}-telemetry"),
                asyncio.create_task(stop.wait(), name=f"{self.store_id}-stop"),
                asyncio.create_task(self._cut_on_storm(client), name=f"{self.store_id}-storm"),
            ]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)
            failures = [r for r in results if isinstance(r, Exception)]
            if failures:
                raise failures[0]
            await self._death(client)

    async def _cut_on_storm(self, client: aiomqtt.Client) -> None:
        """On ``storm()``: cut the socket, then wait for the session to see it lost (the
        downlink raises, as after a real network failure)."""
        await self._drop.wait()
        _cut(client)
        self._lost()  # now, not once aiomqtt has noticed
        await asyncio.Event().wait()

    def _lost(self) -> None:
        if self.connected:
            self._stats.connected -= 1
        self.connected = False
        self._ready.clear()

    async def _birth(self, client: aiomqtt.Client) -> None:
        birth = Birth(bd_seq=self.bd_seq, ts=self._clock.now_ms(), agent_version=AGENT_VERSION,
                      devices=self._devices, outbox_depth=len(self.outbox))
        await client.publish(topics.state(self.store_id), encode(birth), qos=1, retain=True)

    async def _death(self, client: aiomqtt.Client) -> None:
        death = Death(bd_seq=self.bd_seq, ts=self._clock.now_ms())
        try:
            await asyncio.wait_for(client.publish(topics.state(self.store_id), encode(death),
                                                  qos=1, retain=True), _DEATH_TIMEOUT_S)
        except (aiomqtt.MqttError, TimeoutError) as err:
            self._stats.count("death_not_sent")
            logger.debug("store %s: death not published: %s", self.store_id, err)

    async def _publisher(self, client: aiomqtt.Client) -> None:
        s = self._settings
        if s.cloud:  # drain only once the cloud answered this birth (decision 0012)
            # Doubling with full jitter, as the agent (birth_retry): thousands of stores
            # born again at a fixed interval, or doubling in step, bury an ingest that is
            # behind in births (decisions 0057, 0061).
            retry = Backoff(min_s=s.ready_timeout_s, max_s=s.ready_timeout_max_s,
                            rng=self._rng)
            retry.next()  # the first step is min_s exactly: start past it
            wait_s = s.ready_timeout_s
            while not self._ready.is_set():
                try:
                    await asyncio.wait_for(self._ready.wait(), wait_s)
                except TimeoutError:
                    self._stats.count("ready_timeout")
                    await self._birth(client)
                    wait_s = retry.next()
        loop = asyncio.get_running_loop()
        ack_timeout = s.ack_timeout_s if s.cloud else float("inf")
        while True:
            now = loop.time()
            room = s.window - self.outbox.awaiting_ack() if s.cloud else s.window
            batch = self.outbox.due(now, ack_timeout_s=ack_timeout, limit=max(0, room),
                                    ack_timeout_max_s=s.ack_timeout_max_s)
            if not batch:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)  # resends fall due
                continue
            sends = []
            for entry in batch:
                before = entry.event.seq <= self._historical_upto
                sends.append(client.publish(entry.topic, entry.payload(historical=before),
                                            qos=1))
                self.outbox.mark_sent(entry, now)
            await asyncio.gather(*sends)
            self._stats.published += len(batch)
            if not s.cloud:
                self._stats.acked += self.outbox.ack([e.event.id for e in batch])

    async def _telemetry(self, client: aiomqtt.Client) -> None:
        every = self._settings.tele_interval_s
        await asyncio.sleep(random.random() * every)  # stores do not report in lockstep
        while True:
            now = self._clock.now_ms()
            for tele in (self.traffic.telemetry(now),
                         self.traffic.outbox_report(now, depth=len(self.outbox),
                                                    oldest_ts=self.outbox.oldest_ts())):
                await client.publish(topics.tele(self.store_id, tele.device_kind,
                                                 tele.device_id), encode(tele), qos=0)
                self._stats.telemetry += 1
            await asyncio.sleep(every)

    # ---- downlink -----------------------------------------------------------------------

    async def _downlink(self, client: aiomqtt.Client) -> None:
        ready_t, ack_t = topics.ready(self.store_id), topics.ack(self.store_id)
        promotions_t = topics.content_promotions(self.store_id)
        cmd_prefix = topics.cmd(self.store_id, "x")[:-1]
        rebirth_t = topics.fleet("rebirth")
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            try:
                if topic == ready_t:
                    self._on_ready(payload)
                elif topic == ack_t:
                    ack = decode(payload, EventsAck)
                    self._stats.acked += self.outbox.ack(ack.ids)
                    self._wake.set()
                elif topic.startswith(cmd_prefix):
                    await self._on_command(client, topic[len(cmd_prefix):], payload)
                elif topic == promotions_t:
                    self._on_promotions(decode(payload, PromotionsAnnouncement))
                elif topic == rebirth_t:
                    await self._birth(client)
            except ProtocolError as err:
                self._stats.count(f"bad_{err.reason}")
                logger.warning("store %s: bad message on %s: %s", self.store_id, topic, err)

    def _on_ready(self, payload: bytes) -> None:
        try:
            ready: CloudReady | BirthRefused = decode(payload, CloudReady)
        except ProtocolError:
            ready = decode(payload, BirthRefused)
        if isinstance(ready, BirthRefused):
            self._stats.count(f"birth_refused_{ready.reason}")
            logger.error("store %s: cloud refused birth %s: %s %s", self.store_id,
                         ready.bd_seq, ready.reason, ready.detail)
            return
        if ready.bd_seq != self.bd_seq:
            return
        if self._ready.is_set():
            self.outbox.all_due()  # ingest answered again: its in-flight may be lost
        self._ready.set()
        self._wake.set()

    async def _on_command(self, client: aiomqtt.Client, target: str, payload: bytes) -> None:
        if target == topics.ORDERS_TARGET:
            return  # online orders are a till's business: the simulator takes none
        cmd = decode(payload, Command)
        now = self._clock.now_ms()
        result: dict[str, Any] = {}
        status: CommandStatus
        if now > cmd.expires_at:
            status = "expired"
        elif target == "agent" and cmd.name in AGENT_COMMANDS:
            status = "ok"
            if cmd.name == "ping":
                result = {"pong": True}
            elif cmd.name == "get_diagnostics":
                result = {"outbox_depth": len(self.outbox), "bd_seq": self.bd_seq,
                          "agent_version": AGENT_VERSION}
            elif cmd.name == "rebirth":
                await self._birth(client)
        else:
            status = "unknown_command"
        answer = CommandResult(cmd_id=cmd.cmd_id, target=target, status=status, result=result,
                               error=None if status == "ok" else status, ts=now)
        await client.publish(topics.cmd_res(self.store_id), encode(answer), qos=1)
        self._stats.commands_answered += 1

    def _on_promotions(self, announcement: PromotionsAnnouncement) -> None:
        if self._snapshots is None:
            return
        if self._announced is not None and self._announced.version >= announcement.version:
            return
        self._announced = announcement
        task = asyncio.create_task(self._take_snapshot(announcement),
                                   name=f"{self.store_id}-snapshot-{announcement.version}")
        self._snapshot_tasks.add(task)  # held until done: the loop keeps weak references
        task.add_done_callback(self._snapshot_tasks.discard)

    async def _take_snapshot(self, announcement: PromotionsAnnouncement) -> None:
        assert self._snapshots is not None
        priced = await self._snapshots.get(announcement)
        if priced is None:
            self._stats.count("snapshot_unavailable")
            self._announced = None  # the next announcement (a rebirth, a publish) retries
            return
        if self.traffic.priced is None or priced.snapshot.version >= \
                self.traffic.priced.snapshot.version:
            self.traffic.priced = priced


def _devices(count: int) -> list[DeviceInfo]:
    """The devices the birth names: a till, a vending cabinet, a fridge, a cart, then
    generic sensors."""
    fixed = [(TILL, "pos"), (CABINET, "vending"), (FRIDGE, "generic"), (CART, "cart")]
    extra = [(f"sensor-{n}", "generic") for n in range(1, max(0, count - len(fixed)) + 1)]
    return [DeviceInfo(device_id=d, kind=k, model="sim", fw="1.0")
            for d, k in (fixed + extra)[:count]]


def _cut(client: aiomqtt.Client) -> None:
    """Shut the session's socket, as a dropped network would: paho sees the connection
    lost, sends no DISCONNECT, and the broker publishes the Will. aiomqtt has no public
    way to lose a connection uncleanly; its paho client is ``_client`` (aiomqtt 2.x)."""
    sock = client._client.socket()
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
