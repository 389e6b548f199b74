"""Telemetry forwarding: best effort, QoS 0, batched per device, never stored.

While the uplink is up, samples from local ``up/tele`` messages are buffered per device
and published every ``interval_s`` as one ``Telemetry`` per device (at most 1000 samples,
the message's cap). While it is down, or when the buffer is full, messages are dropped
and counted: telemetry is a gauge of now, not a record to replay.
"""

from __future__ import annotations

import asyncio
import logging

from edge_agent.metrics import AgentMetrics
from edge_agent.uplink.publisher import Publish
from protocols import topics
from protocols.codec import encode
from protocols.messages import Sample, Telemetry

logger = logging.getLogger(__name__)

_MAX_SAMPLES_PER_MESSAGE = 1000  # Telemetry.samples max_length


class TelemetryForwarder:
    def __init__(
        self, *, store_id: str, metrics: AgentMetrics, interval_s: float, buffer_max: int
    ) -> None:
        self._store_id = store_id
        self._metrics = metrics
        self.interval_s = interval_s
        self._buffer_max = buffer_max
        self._buffer: dict[tuple[str, str], list[Sample]] = {}
        self._buffered = 0
        self._pending_messages = 0
        self._online = False

    def add(self, message: Telemetry) -> None:
        """Take one local telemetry message (never blocks, never grows past the bound)."""
        if not self._online:
            self._metrics.telemetry_dropped.labels(reason="offline").inc()
            return
        if self._buffered + len(message.samples) > self._buffer_max:
            self._metrics.telemetry_dropped.labels(reason="buffer_full").inc()
            return
        key = (message.device_kind, message.device_id)
        self._buffer.setdefault(key, []).extend(message.samples)
        self._buffered += len(message.samples)
        self._pending_messages += 1

    async def run(self, link: Publish) -> None:
        """Flush every ``interval_s`` over ``link`` until cancelled or the link fails."""
        self._online = True
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                await self.flush(link)
        finally:
            self._online = False
            if self._pending_messages:
                self._metrics.telemetry_dropped.labels(reason="offline").inc(self._pending_messages)
            self._reset()

    async def flush(self, link: Publish) -> None:
        buffer, messages = self._buffer, self._pending_messages
        self._reset()
        try:
            for (kind, device_id), samples in buffer.items():
                topic = topics.tele(self._store_id, kind, device_id)
                for i in range(0, len(samples), _MAX_SAMPLES_PER_MESSAGE):
                    batch = samples[i : i + _MAX_SAMPLES_PER_MESSAGE]
                    msg = Telemetry(device_id=device_id, device_kind=kind, samples=batch)
                    await link.publish(topic, encode(msg), qos=0)
        except BaseException:
            if messages:
                self._metrics.telemetry_dropped.labels(reason="offline").inc(messages)
            raise
        if messages:
            self._metrics.telemetry_forwarded.inc(messages)

    def _reset(self) -> None:
        self._buffer = {}
        self._buffered = 0
        self._pending_messages = 0
