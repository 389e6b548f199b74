"""The simulated access point's bootloader: stores firmware chunks, acks, verifies.

Pure (no I/O): ``ApBootloader.handle(msg)`` returns the reply the AP publishes on
``up/fw``. The staged image survives a disconnect of the agent (it lives in the AP),
so a ``FwBegin`` with the same update id answers the offset already held: the
transfer resumes there, not from zero. On commit the size and sha256 are checked; a
good image becomes the running version (the AP then reboots), a bad one is dropped
and the old version keeps running. The last result per update id is remembered, so
a retried commit gets the same answer instead of ``unknown_update``.
"""

from __future__ import annotations

import binascii
import hashlib
from collections import Counter
from dataclasses import dataclass, field

from protocols.esl import FwAck, FwBegin, FwChunk, FwCommit, FwResult


@dataclass(slots=True)
class Staged:
    begin: FwBegin
    data: bytearray = field(default_factory=bytearray)


@dataclass
class ApBootloader:
    version: str = "1.0.0"
    # Fault injection: stop storing chunks at this offset (a radio stall), so a test
    # can interrupt a transfer at a known point. ``None``: no stall.
    stall_at: int | None = None
    lose_once: set[int] = field(default_factory=set)  # chunk offsets lost the first time
    staged: Staged | None = None
    results: dict[str, FwResult] = field(default_factory=dict)
    log: list[tuple[str, int]] = field(default_factory=list)  # ("begin", acked) / ("chunk", offset)
    stats: Counter[str] = field(default_factory=Counter)

    def handle(self, msg: FwBegin | FwChunk | FwCommit) -> FwAck | FwResult | None:
        if isinstance(msg, FwBegin):
            return self._begin(msg)
        if isinstance(msg, FwChunk):
            return self._chunk(msg)
        return self._commit(msg)

    def _begin(self, msg: FwBegin) -> FwAck:
        s = self.staged
        if s is None or s.begin.model_dump(exclude={"chunk_size"}) != msg.model_dump(
                exclude={"chunk_size"}):
            self.staged = s = Staged(msg)  # a new image: whatever was staged is dropped
        self.log.append(("begin", len(s.data)))
        return FwAck(update_id=msg.update_id, next_offset=len(s.data))

    def _chunk(self, msg: FwChunk) -> FwAck | FwResult | None:
        s = self.staged
        if s is None or s.begin.update_id != msg.update_id:
            self.stats["fw_unknown_update"] += 1
            return self._result(msg.update_id, "unknown_update", "no such update staged")
        self.log.append(("chunk", msg.offset))
        if msg.offset in self.lose_once:
            self.lose_once.discard(msg.offset)
            return None  # lost on the radio: no ack
        try:
            raw = msg.raw()
        except (binascii.Error, ValueError):
            self.stats["fw_bad_chunk"] += 1
            raw = b""
        fits = len(raw) <= s.begin.chunk_size and msg.offset + len(raw) <= s.begin.size
        stalled = self.stall_at is not None and msg.offset >= self.stall_at
        if raw and fits and msg.offset == len(s.data) and not stalled:
            s.data += raw
        else:
            self.stats["fw_chunk_ignored"] += 1  # a duplicate, a gap or a stall: re-ack
        return FwAck(update_id=msg.update_id, next_offset=len(s.data))

    def _commit(self, msg: FwCommit) -> FwResult:
        if msg.update_id in self.results:
            return self.results[msg.update_id]  # a retried commit: the same answer
        s = self.staged
        if s is None or s.begin.update_id != msg.update_id:
            return self._result(msg.update_id, "unknown_update", "no such update staged")
        self.staged = None
        if len(s.data) != s.begin.size:
            return self._result(msg.update_id, "incomplete",
                                f"{len(s.data)} of {s.begin.size} bytes")
        digest = hashlib.sha256(s.data).hexdigest()
        if digest != s.begin.sha256:
            self.stats["fw_bad_image"] += 1
            return self._result(msg.update_id, "bad_image", f"sha256 {digest[:12]}... "
                                f"is not {s.begin.sha256[:12]}...; kept {self.version}")
        self.version = s.begin.version
        self.stats["fw_updated"] += 1
        return self._result(msg.update_id, "ok", "")

    def _result(self, update_id: str, outcome: str, detail: str) -> FwResult:
        result = FwResult(update_id=update_id, outcome=outcome,  # type: ignore[arg-type]
                          fw_version=self.version, detail=detail)
        if outcome != "unknown_update":
            self.results[update_id] = result
        return result
