"""Which label must show what, and whether it does: pure bookkeeping, no I/O.

``LabelBook`` turns a price book into per-label jobs (only for labels whose content
changed: the delta), matches acknowledgements to what each label should show,
schedules retries with exponential backoff and tells which labels are stale (not
converged within ``stale_after_s``). Times are passed in as epoch ms, so a test can
run a day of check-ins by moving a number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from protocols.esl import LabelAck, LabelContent, LabelJob, PriceBook
from protocols.ids import uuid7


class AckResult(Enum):
    CONVERGED = "converged"  # the label now shows what it should
    OUTDATED = "outdated"  # it acknowledged an older content; keep retrying
    DUPLICATE = "duplicate"  # it was converged already
    UNKNOWN = "unknown"  # not a label of ours (counted, not stored: memory stays bounded)


@dataclass(slots=True)
class LabelState:
    label_id: str
    sku: str
    desired: LabelContent | None = None
    desired_hash: str | None = None
    version: int = 0
    job_id: str | None = None
    attempts: int = 0
    next_retry_ms: int | None = None
    pending_since_ms: int | None = None  # None = converged (or nothing to show yet)
    shown_hash: str | None = None
    acked_ms: int | None = None
    battery_pct: float | None = None
    rssi_dbm: int | None = None

    @property
    def converged(self) -> bool:
        """Shows what it should, with no job of ours still outstanding at the AP."""
        return self.desired_hash is None or (
            self.shown_hash == self.desired_hash and self.pending_since_ms is None
        )


@dataclass(frozen=True, slots=True)
class BookCounts:
    pending: int
    acked: int
    stale: int


class LabelBookError(ValueError):
    pass


class LabelBook:
    def __init__(
        self,
        *,
        retry_s: float = 120.0,
        retry_max_s: float = 1800.0,
        stale_after_s: float = 900.0,
        max_labels: int = 20_000,
    ) -> None:
        self.retry_ms = int(retry_s * 1000)
        self.retry_max_ms = int(retry_max_s * 1000)
        self.stale_after_ms = int(stale_after_s * 1000)
        self.max_labels = max_labels
        self.labels: dict[str, LabelState] = {}
        self.book: PriceBook | None = None

    # ---- bindings and price books -------------------------------------------------------

    def bind(self, bindings: Mapping[str, str], *, now_ms: int) -> list[LabelJob]:
        """Bind labels to skus (label id -> sku); returns jobs for labels that changed."""
        new = [label for label in bindings if label not in self.labels]
        if len(self.labels) + len(new) > self.max_labels:
            raise LabelBookError(f"more than {self.max_labels} labels on one access point")
        jobs: list[LabelJob] = []
        for label_id, sku in bindings.items():
            state = self.labels.get(label_id)
            if state is None or state.sku != sku:
                state = self.labels[label_id] = LabelState(label_id=label_id, sku=sku)
            job = self._refresh(state, now_ms=now_ms)
            if job is not None:
                jobs.append(job)
        return jobs

    def unbind(self, label_ids: Iterable[str]) -> int:
        return sum(self.labels.pop(label_id, None) is not None for label_id in label_ids)

    def set_price_book(self, book: PriceBook, *, now_ms: int) -> list[LabelJob] | None:
        """Apply a price book; returns the delta jobs, or None for an old version."""
        if self.book is not None and book.version <= self.book.version:
            return None
        self.book = book
        return [job for s in self.labels.values() if (job := self._refresh(s, now_ms=now_ms))]

    def content_for(self, sku: str) -> LabelContent | None:
        if self.book is None:
            return None
        item = self.book.items.get(sku)
        if item is None:  # withdrawn from the book: the label is cleared, not left lying
            return LabelContent(sku=sku, price_minor=None, currency=self.book.currency)
        return LabelContent(
            sku=sku,
            price_minor=item.price_minor,
            currency=item.currency or self.book.currency,
            promo_text=item.promo_text,
            barcode=item.barcode,
        )

    def _refresh(self, state: LabelState, *, now_ms: int) -> LabelJob | None:
        content = self.content_for(state.sku)
        if content is None:
            return None
        digest = content.content_hash()
        assert self.book is not None
        if digest == state.desired_hash:
            state.version = self.book.version
            return None
        state.desired, state.desired_hash, state.version = content, digest, self.book.version
        if state.shown_hash == digest and state.pending_since_ms is None:
            # Already shows it and no other job is queued at the AP that would overwrite it.
            state.pending_since_ms = None
            state.next_retry_ms = None
            return None
        # A label already behind keeps its older pending_since: staleness measures how long
        # the shelf has disagreed with the store's book, not the age of the newest job.
        if state.pending_since_ms is None:
            state.pending_since_ms = now_ms
        state.job_id = uuid7(now_ms)
        state.attempts = 0
        return self._send(state, now_ms=now_ms)

    def _send(self, state: LabelState, *, now_ms: int) -> LabelJob:
        assert state.desired is not None and state.desired_hash is not None
        if state.job_id is None:
            state.job_id = uuid7(now_ms)
        state.attempts += 1
        backoff = min(self.retry_max_ms, self.retry_ms * 2 ** min(state.attempts - 1, 16))
        state.next_retry_ms = now_ms + backoff
        return LabelJob(
            job_id=state.job_id,
            label_id=state.label_id,
            version=state.version,
            content=state.desired,
            content_hash=state.desired_hash,
            ts=now_ms,
        )

    # ---- acknowledgements, retries, staleness ----------------------------------------------

    def on_ack(self, ack: LabelAck) -> AckResult:
        state = self.labels.get(ack.label_id)
        if state is None:
            return AckResult.UNKNOWN
        state.shown_hash = ack.content_hash
        state.battery_pct, state.rssi_dbm, state.acked_ms = ack.battery_pct, ack.rssi_dbm, ack.ts
        if state.desired_hash is None:
            return AckResult.DUPLICATE
        if ack.content_hash != state.desired_hash:
            if state.pending_since_ms is None:  # a late ack of an old job: it shows that now
                state.pending_since_ms = ack.ts
            if state.next_retry_ms is None:
                state.next_retry_ms = ack.ts
            return AckResult.OUTDATED
        was_pending = state.pending_since_ms is not None
        state.pending_since_ms = None
        state.next_retry_ms = None
        return AckResult.CONVERGED if was_pending else AckResult.DUPLICATE

    def due(self, *, now_ms: int) -> list[LabelJob]:
        """Jobs to send again: unacknowledged past their retry time."""
        return [
            self._send(s, now_ms=now_ms)
            for s in self.labels.values()
            if not s.converged and s.next_retry_ms is not None and s.next_retry_ms <= now_ms
        ]

    def resend_all(self, *, now_ms: int) -> list[LabelJob]:
        """Every unconverged job again (the AP restarted and forgot its queue)."""
        return [self._send(s, now_ms=now_ms) for s in self.labels.values() if not s.converged]

    def is_stale(self, state: LabelState, *, now_ms: int) -> bool:
        return (
            not state.converged
            and state.pending_since_ms is not None
            and now_ms - state.pending_since_ms > self.stale_after_ms
        )

    def stale(self, *, now_ms: int) -> list[str]:
        return sorted(s.label_id for s in self.labels.values() if self.is_stale(s, now_ms=now_ms))

    def counts(self, *, now_ms: int) -> BookCounts:
        pending = acked = stale = 0
        for s in self.labels.values():
            if s.converged:
                acked += s.desired_hash is not None
            elif self.is_stale(s, now_ms=now_ms):
                stale += 1
            else:
                pending += 1
        return BookCounts(pending=pending, acked=acked, stale=stale)
