"""Assets to the audio unit over the local bus: chunked, acknowledged, resumable.

``AssetSender.send(sha256, data)`` first asks the unit what it holds of the asset (an
``AssetChunk`` at offset 0 without data); the unit's ``AssetAck`` answers the bytes it
has, or ``complete`` when it has the whole asset verified, and then nothing is sent.
Otherwise chunks go out from the acknowledged offset, up to ``window`` of them ahead of
the last ack (go-back-N, as the ESL access point's firmware transfer), and each ack
moves the offset on. An ack that repeats the last offset means a chunk was lost: the
chunks go again from there; no ack within ``ack_timeout_s`` asks again where the unit
is. ``max_stalls`` of those in a row, a unit that refuses the asset (wrong sha256, not
a 16-bit mono WAV), or one that made us send four times the asset's size fail with
``AssetTransferError``. So an interrupted transfer (the unit rebooted, the bus dropped)
resumes from the unit's offset; bytes it acked are not sent again. Which assets the
unit has completed is remembered per unit boot.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable

from protocols import encode
from protocols.audio import ASSET_CHUNK_MAX, AssetAck, AssetChunk
from protocols.errors import StorefleetError

logger = logging.getLogger(__name__)

Publish = Callable[[bytes], Awaitable[None]]


class AssetTransferError(StorefleetError):
    """An asset did not reach the unit; ``reason``: ``stalled`` or the unit's error."""

    def __init__(self, device_id: str, sha256: str, reason: str) -> None:
        super().__init__(f"audio {device_id}: asset {sha256[:12]} not sent: {reason}")
        self.device_id = device_id
        self.sha256 = sha256
        self.reason = reason


class AssetSender:
    def __init__(self, device_id: str, publish: Publish, *, chunk_size: int = ASSET_CHUNK_MAX,
                 window: int = 16, ack_timeout_s: float = 2.0, max_stalls: int = 5) -> None:
        self.device_id = device_id
        self._publish = publish
        self.chunk_size = min(chunk_size, ASSET_CHUNK_MAX)
        # Chunks in flight: one per round trip would leave the bus idle (each ack takes
        # ~90 ms through the broker with Nagle and delayed acks), 16 x 24 KiB keep it busy
        # and stay far below a unit's receive queue (1,000 messages).
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        self.max_stalls = max_stalls
        self.unit_has: set[str] = set()  # completed on the unit since its last boot
        self.chunks_sent = 0
        self._acks: dict[str, asyncio.Queue[AssetAck]] = {}

    def on_ack(self, ack: AssetAck) -> None:
        if ack.complete:
            self.unit_has.add(ack.sha256)
        queue = self._acks.get(ack.sha256)
        if queue is not None:
            queue.put_nowait(ack)

    def unit_rebooted(self) -> None:
        self.unit_has.clear()

    async def _next_ack(self, queue: asyncio.Queue[AssetAck]) -> AssetAck | None:
        try:
            async with asyncio.timeout(self.ack_timeout_s):
                return await queue.get()
        except TimeoutError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # a cancellation that raced with the timeout: shutting down, not a stall
                raise asyncio.CancelledError from None
            return None

    async def send(self, sha256: str, data: bytes) -> int:
        """Make the unit hold the asset; returns the bytes sent (0 if it had it)."""
        if sha256 in self.unit_has:
            return 0
        queue: asyncio.Queue[AssetAck] = asyncio.Queue()
        self._acks[sha256] = queue
        try:
            return await self._send(sha256, data, queue)
        finally:
            del self._acks[sha256]

    async def _send(self, sha256: str, data: bytes, queue: asyncio.Queue[AssetAck]) -> int:
        size, sent, stalls = len(data), 0, 0
        acked = next_offset = 0
        resent_from = -1
        probing = True  # asked the unit what it holds; nothing more goes out until it says
        await self._publish(encode(AssetChunk(sha256=sha256, size=size, offset=0)))
        while True:
            if sent > 4 * size + self.window * self.chunk_size:
                # a unit that keeps losing what it acked: give up rather than loop forever
                raise AssetTransferError(self.device_id, sha256, "no_progress")
            while (not probing and next_offset < size
                   and next_offset - acked < self.window * self.chunk_size):
                piece = data[next_offset:next_offset + self.chunk_size]
                await self._publish(encode(AssetChunk(
                    sha256=sha256, size=size, offset=next_offset,
                    data_b64=base64.b64encode(piece).decode())))
                next_offset += len(piece)
                sent += len(piece)
                self.chunks_sent += 1
            ack = await self._next_ack(queue)
            if ack is None:
                stalls += 1
                if stalls >= self.max_stalls:
                    raise AssetTransferError(self.device_id, sha256, "stalled")
                probing = True  # go back: ask again where the unit is
                await self._publish(encode(AssetChunk(sha256=sha256, size=size, offset=0)))
                continue
            stalls = 0
            if ack.error is not None:
                raise AssetTransferError(self.device_id, sha256, ack.error)
            if ack.complete:
                return sent
            have = min(ack.have, size)
            if probing or have < acked or have > next_offset:
                # the answer to the question, a unit that lost bytes (it rebooted), or
                # one ahead of us: go on from what it holds
                probing = False
                next_offset = have
            elif have == acked < next_offset and resent_from != have:
                # a chunk after a lost one: go back at once, not after a timeout (once
                # per offset: the other chunks in flight repeat this ack)
                next_offset = resent_from = have
            acked = have
