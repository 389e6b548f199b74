"""``AgentDriverContext``: the agent-side ``DriverContext`` every driver gets.

It is the drivers' only way into the agent, and a thin one:

- ``emit_event``   -> the durable outbox, in exactly the shape the local consumer gives
  device events (``localbus.consumer.event_row``), so the cloud cannot tell them apart;
- ``telemetry``    -> the ``TelemetryForwarder`` (best effort, QoS 0, batched);
- ``publish_local``-> the local-bus client while it is connected (``LinkError`` otherwise);
- ``on_local``     -> the consumer dispatches ``store/{kind}/+/up/{type}`` messages of
  other types than evt/tele/state to the handler, after the batch commit.

Bad input from a driver (an unknown event kind, a non-scalar telemetry value) is refused
with ``DriverError`` / counted in ``storefleet_driver_bad_output_total``; it never reaches
the outbox or the uplink.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from edge_agent.drivers.base import DriverError, LocalHandler
from edge_agent.localbus.consumer import LocalBusConsumer, event_row
from edge_agent.uplink.outbox import Outbox
from edge_agent.uplink.telemetry import TelemetryForwarder
from protocols.clock import Clock
from protocols.ids import uuid7
from protocols.messages import EVENT_KINDS, Sample, Telemetry
from protocols.topics import valid_id

logger = logging.getLogger(__name__)


class AgentDriverContext:
    """Implements ``drivers.base.DriverContext`` over the agent's real parts."""

    def __init__(
        self,
        *,
        store_id: str,
        clock: Clock,
        registry: CollectorRegistry,
        outbox: Outbox,
        telemetry: TelemetryForwarder,
        local: LocalBusConsumer,
        data_dir: Path | None = None,
    ) -> None:
        self.store_id = store_id
        self.data_dir = data_dir  # drivers keep their files under it (audio cache ...)
        self.clock = clock
        self.registry = registry
        self._outbox = outbox
        self._telemetry = telemetry
        self._local = local
        self._bad_output = Counter(
            "storefleet_driver_bad_output_total",
            "events or telemetry from a driver refused as invalid",
            ["what"],
            registry=registry,
        )

    async def emit_event(
        self, kind: str, *, device_id: str, data: Mapping[str, Any], event_id: str | None = None
    ) -> str:
        if kind not in EVENT_KINDS:
            self._bad_output.labels(what="event_kind").inc()
            raise DriverError(device_id, f"unknown event kind {kind!r}")
        event_id = event_id or uuid7(self.clock.now_ms())
        if not valid_id(event_id) or not valid_id(device_id):
            self._bad_output.labels(what="event_id").inc()
            raise DriverError(device_id, f"bad event or device id {event_id!r}")
        row = event_row(
            self.store_id,
            event_id=event_id,
            kind=kind,
            device_id=device_id,
            ts=self.clock.now_ms(),
            data=data,
        )
        await self._outbox.put_many([row])  # INSERT OR IGNORE: the same id twice is one row
        return event_id

    def telemetry(self, device_kind: str, device_id: str, values: Mapping[str, Any]) -> None:
        try:
            message = Telemetry(
                device_id=device_id,
                device_kind=device_kind,
                samples=[Sample(ts=self.clock.now_ms(), values=dict(values))],
            )
        except ValidationError as err:
            self._bad_output.labels(what="telemetry").inc()
            logger.warning("driver %s/%s: bad telemetry: %s", device_kind, device_id, err)
            return
        self._telemetry.add(message)

    async def publish_local(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        await self._local.publish(topic, payload, qos=qos, retain=retain)

    def on_local(self, device_kind: str, handler: LocalHandler) -> None:
        self._local.add_handler(device_kind, handler)

    def off_local(self, device_kind: str, handler: LocalHandler) -> None:
        """Undo ``on_local`` (a driver replaced by a new config stops receiving)."""
        self._local.remove_handler(device_kind, handler)
