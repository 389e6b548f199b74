"""Request/reply over the lock board's framed serial protocol (``protocols.vending``).

One request in flight at a time (the board is half-duplex in spirit). Each request
gets a fresh SEQ; a reply with another SEQ (a late answer to an earlier, timed-out
request) is out of sequence and thrown away. A request without a valid reply in
``timeout_s`` is sent again with the same SEQ, which the board answers from its
reply cache without acting twice. Every byte thrown away is counted by reason.
"""

from __future__ import annotations

import asyncio
import logging

from edge_agent.drivers.base import DriverError
from edge_agent.drivers.links import (
    ByteLink,
    LinkMetrics,
    LinkTimeout,
    SerialLink,
)
from protocols import vending as v

logger = logging.getLogger(__name__)

__all__ = ["BoardClient", "BoardError", "SerialLink"]


class BoardError(DriverError):
    """The board answered with an error reply (``code``)."""

    def __init__(self, device_id: str, code: int) -> None:
        super().__init__(device_id, f"board error reply {code}")
        self.code = code


class BoardClient:
    def __init__(self, link: ByteLink, *, device_id: str, metrics: LinkMetrics,
                 timeout_s: float = 0.5, retries: int = 2) -> None:
        self._link = link
        self._device = device_id
        self._metrics = metrics
        self._timeout = timeout_s
        self._retries = retries
        self._decoder = v.FrameDecoder()
        self._seq = 0
        self._lock = asyncio.Lock()
        self._dropped_seen = 0
        self.retransmits = 0

    def _reject(self, reason: str, n: int = 1) -> None:
        self._metrics.rejected.labels(device=self._device, reason=reason).inc(n)

    async def request(self, cmd: v.Cmd, payload: bytes = b"") -> bytes:
        """Send one request, return the reply payload; ``LinkTimeout`` after retries."""
        async with self._lock:
            self._seq = (self._seq + 1) % 256
            frame = v.Frame(self._seq, cmd, payload)
            wire = v.encode(frame)
            for attempt in range(self._retries + 1):
                if attempt:
                    self.retransmits += 1
                await self._link.write(wire)
                reply = await self._await_reply(frame)
                if reply is not None:
                    if reply.cmd == v.Cmd.ERROR:
                        raise BoardError(self._device, reply.payload[0] if reply.payload else 0)
                    return reply.payload
            self._metrics.timeouts.labels(device=self._device).inc()
            raise LinkTimeout(self._device, f"{cmd.name} unanswered after "
                                            f"{self._retries + 1} tries")

    async def _await_reply(self, request: v.Frame) -> v.Frame | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while (left := deadline - loop.time()) > 0:
            try:
                data = await self._link.read(wait_s=left)
            except LinkTimeout:
                break
            self._count_dropped()
            found: v.Frame | None = None
            for item in self._decoder.feed(data):
                if isinstance(item, v.Rejected):
                    self._reject(item.reason, 1)
                    logger.debug("%s: rejected %d bytes (%s)", self._device, item.size,
                                 item.reason)
                elif found is None and item.seq == request.seq and (
                    item.cmd in (request.cmd | v.REPLY_BIT, v.Cmd.ERROR)
                ):
                    found = item
                else:  # a late reply to an earlier request, or a second answer
                    self._reject("out_of_sequence")
            if found is not None:
                return found
        partial = self._decoder.reset()
        if partial is not None:
            self._reject(partial.reason)
        return None

    def _count_dropped(self) -> None:
        dropped = self._link.dropped_bytes
        if dropped > self._dropped_seen:
            self._metrics.dropped.labels(device=self._device).inc(dropped - self._dropped_seen)
            self._dropped_seen = dropped
