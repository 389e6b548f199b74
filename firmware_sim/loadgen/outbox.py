"""A simulated store's outbox: events in the order they were made, each kept until it
is safe (the real one is ``edge_agent/uplink/outbox.py``, SQLite; here memory is
enough: a simulated store that dies loses nothing a test or bench counts).

Safe means, as in ``edge_agent/uplink/publisher.py``: the cloud acknowledged it on
``ack`` (decision 0028, ``cloud_acks=True``), or the broker's PUBACK arrived when no
cloud answers. A sent event the cloud has not acknowledged after ``ack_timeout_s`` is
due again; a new session sends everything still here again, marked ``historical``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from protocols.codec import encode
from protocols.messages import Event


@dataclass(slots=True)
class Entry:
    event: Event
    topic: str
    sent_at: float | None = None  # loop time of the last send in this session
    tries: int = 0  # sends over all sessions

    def payload(self, *, historical: bool = False) -> bytes:
        """The event as sent now: a resend, or an event made before this session
        (``historical``), is marked ``historical`` (same id and seq)."""
        event = self.event
        if (self.tries or historical) and not event.historical:
            event = event.model_copy(update={"historical": True})
        return encode(event)


class MemoryOutbox:
    def __init__(self, *, limit: int = 100_000) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._limit = limit  # a store cut off for hours drops its oldest beyond this
        self.dropped = 0
        self.acked = 0
        self.resent = 0

    def __len__(self) -> int:
        return len(self._entries)

    def oldest_ts(self) -> int | None:
        first = next(iter(self._entries.values()), None)
        return None if first is None else first.event.ts

    def add(self, event: Event, topic: str) -> None:
        if event.id in self._entries:
            return  # the same event twice is one event (ids are idempotency keys)
        self._entries[event.id] = Entry(event, topic)
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)
            self.dropped += 1

    def new_session(self) -> None:
        """Nothing is in flight in a new session: every entry is sent again."""
        for entry in self._entries.values():
            entry.sent_at = None

    def due(self, now: float, *, ack_timeout_s: float, limit: int,
            ack_timeout_max_s: float = 600.0) -> list[Entry]:
        """Entries to send now, oldest first: never sent this session, or sent and not
        acknowledged in time: ``ack_timeout_s``, doubled per send up to
        ``ack_timeout_max_s`` (as the agent: resends at a fixed interval to an ingest
        that is behind only bury it deeper)."""
        out: list[Entry] = []
        for entry in self._entries.values():
            wait_s = min(ack_timeout_s * 2 ** min(max(entry.tries - 1, 0), 30),
                         ack_timeout_max_s)
            if entry.sent_at is None or now - entry.sent_at >= wait_s:
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    def mark_sent(self, entry: Entry, now: float) -> None:
        if entry.tries:
            self.resent += 1
        entry.sent_at = now
        entry.tries += 1

    def awaiting_ack(self) -> int:
        """Entries sent this session and not yet acknowledged."""
        return sum(1 for entry in self._entries.values() if entry.sent_at is not None)

    def all_due(self) -> None:
        """The cloud answered a birth again: what it had in flight may be gone."""
        self.new_session()

    def ack(self, ids: Iterable[str]) -> int:
        """Delete these events (the cloud committed them, or the broker took them)."""
        gone = 0
        for event_id in ids:
            if self._entries.pop(event_id, None) is not None:
                gone += 1
        self.acked += gone
        return gone
