""""Seen but not scanned": products the basket camera saw go in that the basket lacks.

The k-th picture of a category in a cart session asks for at least k scanned units of
that category in the session by ``window_ms`` after the picture. Scanning before or
after the picture both count (shoppers do either), and nothing is judged before the
window is over, so a shopper who puts a pack in and scans it a few seconds later is
never flagged. A session that ended or changed before its window closed is not judged
(the checkout settles it; its basket is gone from the cart driver).

Pure and synchronous: ``seen`` records, ``due`` judges what is over; the caller (the
in-aisle runtime) supplies each session's scanned units by category and turns the
answers into a metric and an event. Everything is bounded.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass

MAX_PENDING = 10_000  # pictures awaiting judgement (a store's carts over one window)
MAX_SESSIONS = 5_000  # sessions whose picture counts are remembered (oldest forgotten)
MAX_SNAPSHOTS = 256  # snapshot ids remembered per session (a redelivered picture counts once)


@dataclass(frozen=True, slots=True)
class Unscanned:
    cart_id: str
    session_id: str
    category: str
    snapshot_id: str | None
    seen_ms: int
    pictured: int  # pictures of this category in the session up to this one
    scanned: int  # units of this category scanned in the session when judged


@dataclass(frozen=True, slots=True)
class _Pending:
    due_ms: int
    cart_id: str
    session_id: str
    category: str
    snapshot_id: str | None
    seen_ms: int
    ordinal: int


@dataclass
class _Session:
    counts: collections.Counter[str]
    snapshots: collections.deque[str]


ScannedUnits = Callable[[str, str], Mapping[str, int] | None]
"""(cart id, session id) -> scanned units by category, or None if that session is over."""


class UnscannedCheck:
    def __init__(self, *, window_ms: int, max_pending: int = MAX_PENDING) -> None:
        if window_ms <= 0:
            raise ValueError("window_ms must be > 0")
        self.window_ms = window_ms
        self.max_pending = max_pending
        self._pending: collections.deque[_Pending] = collections.deque()
        self._sessions: collections.OrderedDict[tuple[str, str], _Session] = (
            collections.OrderedDict())
        self.dropped = 0  # pictures not judged because the pending list was full
        self.unjudged = 0  # pictures whose session ended before the window closed

    @property
    def pending(self) -> int:
        return len(self._pending)

    def seen(self, cart_id: str, category: str, *, session_id: str, ts_ms: int,
             snapshot_id: str | None = None) -> bool:
        """Record a picture; False if it was a repeat of one already recorded or dropped."""
        key = (cart_id, session_id)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = _Session(collections.Counter(),
                                                     collections.deque(maxlen=MAX_SNAPSHOTS))
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        self._sessions.move_to_end(key)
        if snapshot_id is not None:
            if snapshot_id in session.snapshots:
                return False
            session.snapshots.append(snapshot_id)
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return False
        session.counts[category] += 1
        # Arrival order is due order only if pictures arrive in time order; a late
        # picture (an older ts) merely waits behind the ones before it.
        self._pending.append(_Pending(ts_ms + self.window_ms, cart_id, session_id, category,
                                      snapshot_id, ts_ms, session.counts[category]))
        return True

    def due(self, now_ms: int, scanned: ScannedUnits) -> list[Unscanned]:
        """Judge every picture whose window is over; the ones still short of scans."""
        out: list[Unscanned] = []
        while self._pending and self._pending[0].due_ms <= now_ms:
            p = self._pending.popleft()
            units = scanned(p.cart_id, p.session_id)
            if units is None:
                self.unjudged += 1
                continue
            have = int(units.get(p.category, 0))
            if have < p.ordinal:
                out.append(Unscanned(p.cart_id, p.session_id, p.category, p.snapshot_id,
                                     p.seen_ms, p.ordinal, have))
        return out

    def forget(self, cart_id: str, session_id: str) -> None:
        self._sessions.pop((cart_id, session_id), None)
