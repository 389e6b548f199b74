"""Maintenance windows (decision 0043): when a store may be offered an install.

    window = Window.parse("Europe/Berlin", "22:00-02:00")
    window.open_at(now_ms)          # in the store's wall-clock time, DST included

A window is a daily span of local wall-clock time in the store's IANA time zone, read
with ``zoneinfo``: "02:00-05:00" is 02:00 to 05:00 on the store's clocks whatever the
UTC offset of the day, so it follows daylight saving time. A window may cross midnight
("22:00-02:00"). On the night clocks spring forward a window lying wholly inside the
skipped hour does not occur (the store's clocks never show it); the store waits for the
next night. A store without a window is offered at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud.errors import CloudError

MINUTES_PER_DAY = 24 * 60
_SPAN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class WindowError(CloudError):
    """A time zone or window that cannot be used (``field`` names which)."""

    reason = "bad_window"

    def __init__(self, detail: str, *, field: str) -> None:
        super().__init__(detail)
        self.detail, self.field = detail, field


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` ("Europe/Berlin"), or ``WindowError``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:  # ValueError: "../x", "", etc.
        raise WindowError(f"unknown time zone {name!r} (an IANA name such as "
                          "'Europe/Berlin')", field="timezone") from err


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class Window:
    timezone: str
    start_min: int  # local minutes since midnight
    end_min: int  # exclusive; below start_min: the window crosses midnight

    @classmethod
    def parse(cls, timezone: str, span: str) -> Window:
        zone(timezone)
        m = _SPAN.match(span)
        if m is None:
            raise WindowError(f"window {span!r} is not HH:MM-HH:MM (e.g. 02:00-05:00)",
                              field="window")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end:
            raise WindowError(f"window {span!r} is empty (start equals end)", field="window")
        return cls(timezone, start, end)

    @property
    def span(self) -> str:
        return f"{_hhmm(self.start_min)}-{_hhmm(self.end_min)}"

    def local_minute(self, now_ms: int) -> int:
        local = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(zone(self.timezone))
        return local.hour * 60 + local.minute

    def open_at(self, now_ms: int) -> bool:
        m = self.local_minute(now_ms)
        if self.start_min < self.end_min:
            return self.start_min <= m < self.end_min
        return m >= self.start_min or m < self.end_min  # crosses midnight

    def describe(self) -> str:
        return f"{self.span} {self.timezone}"
