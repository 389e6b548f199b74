"""Cash drawer state from the printer's DK connector: transitions and the
drawer-left-open alarm (timed on the injected clock)."""

from __future__ import annotations

import enum

from escpos.constants import CD_KICK_2, CD_KICK_5

from protocols.clock import Clock


class DrawerTransition(enum.Enum):
    OPENED = "drawer_opened"
    CLOSED = "drawer_closed"


class CashDrawer:
    def __init__(self, *, clock: Clock, open_alarm_s: float = 60.0, pin: int = 2) -> None:
        self._clock = clock
        self._open_alarm_s = open_alarm_s  # a till left open this long is a loss-prevention alarm
        self._pin = pin
        self._open: bool | None = None  # None until the first status read
        self._opened_at = 0.0
        self.kicks = 0

    def kick_bytes(self) -> bytes:
        """ESC p m t1 t2 with python-escpos' standard pulse (100 ms on, 100 ms off)."""
        self.kicks += 1
        return CD_KICK_5 if self._pin == 5 else CD_KICK_2

    def update(self, is_open: bool) -> DrawerTransition | None:
        before, self._open = self._open, is_open
        if before is None or before == is_open:
            if before is None and is_open:
                self._opened_at = self._clock.monotonic()
            return None
        if is_open:
            self._opened_at = self._clock.monotonic()
            return DrawerTransition.OPENED
        return DrawerTransition.CLOSED

    @property
    def state(self) -> str:
        return "unknown" if self._open is None else ("open" if self._open else "closed")

    def alarms(self) -> tuple[str, ...]:
        if self._open and self._clock.monotonic() - self._opened_at >= self._open_alarm_s:
            return ("drawer_open_too_long",)
        return ()
