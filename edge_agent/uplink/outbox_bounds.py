"""What a full outbox gives up, in order, and the alarm before it must (decision 0025).

Business events (``protocols.business``: sales, refunds, vends, redemptions, orders)
are never dropped. The rest (device chatter, alarms, analytics) is low-value:

1. Past ``max_bytes`` the oldest low-value rows are dropped, and past ``max_age_s``
   low-value rows are dropped by age (``storefleet_outbox_dropped_total{reason}``).
2. *Headroom* is the room business events still have, over the rate they arrive:
   ``(max_bytes - business bytes held) / business bytes per second`` over the last
   five minutes (low-value rows are room: they go first). Under an hour the
   ``outbox_headroom_low`` alarm is raised (``storefleet_outbox_headroom_seconds``,
   ``storefleet_outbox_alarm``, a ``device_alarm`` event, a WARNING).
3. When the business rows leave no room for a new low-value row it is refused
   (``storefleet_outbox_refused_total{kind, reason}``); a refusal raises the headroom
   alarm too, so it is never raised after the first refusal.
4. Business rows alone past the bound are still accepted: ``outbox_over_bound`` is
   raised, logged at ERROR while it lasts.

This module holds the arithmetic and the alarm states; ``uplink.outbox`` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OutboxAlarm = Literal["outbox_headroom_low", "outbox_over_bound"]
ALARMS: tuple[OutboxAlarm, ...] = ("outbox_headroom_low", "outbox_over_bound")

# A finite "plenty" when no business event arrives: Prometheus' +Inf breaks some
# dashboard panels, and a week is beyond any outage the alarm is for.
HEADROOM_CAP_S = 7 * 86_400.0

# The headroom alarm clears only at twice its threshold: a rate hovering around the
# threshold raises one alarm, not one per put.
_CLEAR_FACTOR = 2.0


class WriteRate:
    """Bytes per second written over the last ``window_s``, kept in fixed buckets.

    The metrics thread reads it while the database thread adds to it: two lists of a
    fixed length, so a read never meets a container changing size."""

    def __init__(self, *, window_s: int = 300, bucket_s: int = 10) -> None:
        # Five minutes: long enough to smooth a till's burst of sales, short enough to
        # see a surge (or the end of one) within minutes.
        self._bucket_ms = bucket_s * 1000
        self._window_s = window_s
        self._n = window_s // bucket_s
        self._sums = [0] * self._n
        self._bucket_ids = [-1] * self._n

    def add(self, now_ms: int, nbytes: int) -> None:
        if nbytes <= 0:
            return
        bucket = now_ms // self._bucket_ms
        i = bucket % self._n
        if self._bucket_ids[i] != bucket:  # a slot last used a window ago: start it again
            self._sums[i] = 0
            self._bucket_ids[i] = bucket
        self._sums[i] += nbytes

    def per_s(self, now_ms: int) -> float:
        bucket = now_ms // self._bucket_ms
        total = sum(
            s for s, b in zip(self._sums, self._bucket_ids, strict=True)
            if bucket - self._n < b <= bucket
        )
        return total / self._window_s


def headroom_s(*, max_bytes: int, business_bytes: int, business_rate: float) -> float:
    """Seconds until business rows alone fill ``max_bytes`` at ``business_rate`` B/s."""
    room = max_bytes - business_bytes
    if room <= 0:
        return 0.0
    if business_rate <= 0:
        return HEADROOM_CAP_S
    return min(HEADROOM_CAP_S, room / business_rate)


@dataclass(frozen=True, slots=True)
class Transition:
    alarm: OutboxAlarm
    active: bool


class AlarmStates:
    """Which outbox alarms are raised; ``update`` returns what changed."""

    def __init__(self, *, headroom_alarm_s: float) -> None:
        self.headroom_alarm_s = headroom_alarm_s
        self.active: set[OutboxAlarm] = set()

    def update(self, *, headroom: float, refusing: bool, over_bound: bool) -> list[Transition]:
        low = "outbox_headroom_low" in self.active
        if refusing or headroom < self.headroom_alarm_s:
            low = True
        elif headroom >= self.headroom_alarm_s * _CLEAR_FACTOR:
            low = False
        wanted: dict[OutboxAlarm, bool] = {
            "outbox_headroom_low": low,
            "outbox_over_bound": over_bound,
        }
        changes: list[Transition] = []
        for alarm, on in wanted.items():
            if on != (alarm in self.active):
                (self.active.add if on else self.active.discard)(alarm)
                changes.append(Transition(alarm, on))
        return changes
