"""The agent's client on the store-local bus: ``store/{kind}/{device_id}/up/{type}``.

Nothing lost across a ``kill -9`` of the agent: the consumer is an ``AckSubscriber``
(``storefleet.mqtt``, decision 0034): a persistent session (client id
``{store}-agent``), a QoS 1 subscription, and each QoS 1 message acknowledged (PUBACK)
only after what it carries is committed to the outbox. Until then the broker keeps it
and redelivers it to the next session; the outbox ignores a redelivered event whose id
it already holds.

Messages are taken in batches (whatever has arrived, up to ``batch_max``) and a batch's
events are committed in one transaction: while one commit runs, the next batch gathers.

Memory is bounded: the receive queue holds at most ``queue_max`` messages. Beyond it a
QoS 0 message is dropped (counted in ``storefleet_local_dropped_total{qos}``); a QoS 1
message is left unacknowledged and the session is restarted afterwards, so the broker
redelivers it (it never left the broker).

Driver traffic: a message of any other type (``up/scan``, ``up/ack`` ...) goes to the
handlers drivers registered for its device kind (``add_handler``), after the batch's
events are committed and before the batch is acknowledged. A failing handler is logged
and counted (``storefleet_local_handler_errors_total``) and never ends the session.
``publish`` sends on the local bus while connected (drivers' ``down/...`` messages).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiomqtt
from prometheus_client import Counter

from edge_agent.config import BrokerAddress
from edge_agent.errors import LinkError, StorageError
from edge_agent.localbus.registry import DeviceRegistry
from edge_agent.metrics import AgentMetrics
from edge_agent.uplink.outage import Outage, mqtt_logger
from edge_agent.uplink.outbox import NewRow, Outbox
from edge_agent.uplink.telemetry import TelemetryForwarder
from protocols import topics
from protocols.backoff import Backoff
from protocols.clock import Clock
from protocols.codec import decode, decode_device_event, encode
from protocols.errors import ProtocolError
from protocols.messages import DeviceEvent, DeviceState, Event, Telemetry
from storefleet.mqtt.payloads import count_bad
from storefleet.mqtt.subscriber import AckSubscriber, Batch, NotConnected

logger = logging.getLogger(__name__)
_mqtt_logger = mqtt_logger(f"{__name__}.mqtt")  # paho's records for the local-bus client

LocalHandler = Callable[[str, str, bytes], Awaitable[None]]
"""(device_id, message type, payload); the same shape as ``drivers.base.LocalHandler``."""

_AGENT_TYPES = frozenset({"evt", "tele", "state"})  # the types the consumer itself handles


def event_row(
    store_id: str,
    *,
    event_id: str,
    kind: str,
    device_id: str | None,
    ts: int,
    data: Mapping[str, Any],
) -> NewRow:
    """The outbox row of one business event: the one shape for device and driver events."""
    payload_data = dict(data)

    def build(seq: int) -> bytes:
        event = Event(
            id=event_id,
            kind=kind,
            store_id=store_id,
            device_id=device_id,
            seq=seq,
            ts=ts,
            data=payload_data,
        )
        return encode(event)

    return NewRow(id=event_id, topic=topics.evt(store_id, kind), encode=build)


class LocalBusConsumer:
    def __init__(
        self,
        address: BrokerAddress,
        *,
        store_id: str,
        outbox: Outbox,
        registry: DeviceRegistry,
        telemetry: TelemetryForwarder,
        metrics: AgentMetrics,
        clock: Clock,
        batch_max: int,
        queue_max: int,
        keepalive_s: int,
        backoff: Backoff,
    ) -> None:
        self._address = address
        self._store_id = store_id
        self._outbox = outbox
        self._registry = registry
        self._telemetry = telemetry
        self._metrics = metrics
        self._clock = clock
        self._outage = Outage("local bus", clock=clock)
        self._handlers: dict[str, list[LocalHandler]] = {}
        self._handler_errors = Counter(
            "storefleet_local_handler_errors_total",
            "driver handlers of local-bus messages that raised",
            ["device_kind"],
            registry=metrics.registry,
        )
        self._subscriber = AckSubscriber(
            address,
            client_id=f"{store_id}-agent",
            filters=[topics.local_up_filter()],
            handle=self._process,
            backoff=backoff,
            name="local bus",
            window_s=0.0,  # whatever has arrived: the next batch gathers during a commit
            batch_max=batch_max,
            keepalive_s=keepalive_s,
            on_connect=self._on_connect,
            on_error=self._on_error,
            retry_on=(StorageError,),
            queue_max=queue_max,
            on_dropped=lambda qos: metrics.local_dropped.labels(qos=str(qos)).inc(),
            mqtt_logger=_mqtt_logger,
        )

    @property
    def connected(self) -> bool:
        return self._subscriber.connected.is_set()

    # ---- driver hooks -------------------------------------------------------------------

    def add_handler(self, device_kind: str, handler: LocalHandler) -> None:
        """Receive ``store/{device_kind}/+/up/{type}`` for types other than evt/tele/state."""
        self._handlers.setdefault(device_kind, []).append(handler)

    def remove_handler(self, device_kind: str, handler: LocalHandler) -> None:
        handlers = self._handlers.get(device_kind, [])
        if handler in handlers:
            handlers.remove(handler)

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish on the local bus; ``LinkError`` while the session is down."""
        try:
            await self._subscriber.publish(topic, payload, qos=qos, retain=retain)
        except NotConnected as err:
            raise LinkError("local", f"not connected; cannot publish {topic}") from err
        except aiomqtt.MqttError as err:
            raise LinkError("local", f"publish {topic}: {err}") from err

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with backoff."""
        await self._subscriber.run()

    async def _on_connect(self) -> None:
        self._outage.over()
        logger.info("local bus connected to %s", self._address.url)

    def _on_error(self, err: Exception) -> None:
        if isinstance(err, StorageError):
            logger.warning("local bus session ended: %s", err)
        else:  # lost or not made: one warning per outage
            self._outage.lost(LinkError("local", str(err)))

    async def _process(self, batch: Batch) -> None:
        """Commit the batch's events, then run the driver handlers; the subscriber
        acknowledges the batch when this returns."""
        rows: list[NewRow] = []
        dispatch: list[tuple[str, str, str, bytes]] = []
        now = self._clock.now_ms()
        for message in batch:
            topic, payload = str(message.topic), _payload(message.payload)
            try:
                row = self._handle(topic, payload, now_ms=now, dispatch=dispatch)
            except ProtocolError as err:
                count_bad(err, bad=self._metrics.bad_payloads, source="local",
                          what=f"local message on {topic}", log=logger)
                continue
            if row is not None:
                rows.append(row)
        if rows:
            await self._outbox.put_many(rows)
        for kind, device_id, type_, payload in dispatch:
            await self._dispatch(kind, device_id, type_, payload)

    async def _dispatch(self, kind: str, device_id: str, type_: str, payload: bytes) -> None:
        for handler in list(self._handlers.get(kind, ())):
            try:
                await handler(device_id, type_, payload)
            except Exception:  # isolation: a driver bug never ends the session
                self._handler_errors.labels(device_kind=kind).inc()
                logger.exception("local handler for %s/%s (%s) failed", kind, device_id, type_)

    def _handle(
        self,
        topic: str,
        payload: bytes,
        *,
        now_ms: int,
        dispatch: list[tuple[str, str, str, bytes]],
    ) -> NewRow | None:
        where = topics.parse_local(topic)
        if where.direction != "up" or where.rest:
            raise _BadLocal("bad_topic", f"not an up/<type> topic: {topic}")
        kind, device_id = where.device_kind, where.device_id
        if where.type not in _AGENT_TYPES and self._handlers.get(kind):
            self._registry.seen(device_id, now_ms=now_ms)
            dispatch.append((kind, device_id, where.type, payload))
            return None
        match where.type:
            case "evt":
                self._registry.seen(device_id, now_ms=now_ms)
                # Refused (too_large) unless its uplink Event fits the cloud's cap.
                return self._event_row(kind, device_id, decode_device_event(payload))
            case "tele":
                tele = decode(payload, Telemetry)
                if (tele.device_kind, tele.device_id) != (kind, device_id):
                    raise _BadLocal("topic_mismatch", "device in payload differs from topic")
                self._registry.seen(device_id, now_ms=now_ms)
                self._telemetry.add(tele)
                return None
            case "state":
                if not payload:  # an emptied retained state: the device was removed
                    self._registry.remove(device_id)
                    return None
                state = decode(payload, DeviceState)
                self._registry.update_state(kind, device_id, state, now_ms=now_ms)
                return None
        raise _BadLocal("unknown_type", f"unknown local message type {where.type!r}")

    def _event_row(self, kind: str, device_id: str, dev: DeviceEvent) -> NewRow:
        return event_row(
            self._store_id,
            event_id=dev.id,
            kind=dev.kind,
            device_id=device_id,
            ts=dev.ts,
            data=dev.data,
        )


class _BadLocal(ProtocolError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _payload(raw: Any) -> bytes:
    if isinstance(raw, bytes | bytearray):
        return bytes(raw)
    if raw is None:
        return b""
    return str(raw).encode()
