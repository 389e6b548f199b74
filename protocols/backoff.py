"""Capped exponential backoff with full jitter: the one the agent, the cloud and the
simulators reconnect and restart with (decision 0031).

It lives in ``protocols`` because it is pure computation shared by every package (the
two copies, ``cloud/backoff.py`` and ``edge_agent/backoff.py``, are gone).

The exponent is capped, not only the delay: the cloud's copy computed
``factor ** attempt`` before taking the minimum with ``max_s``, so about 1,024 failed
attempts (some six hours of broker outage at a 30 s cap) raised ``OverflowError``,
which escaped the reconnect loop's ``except MqttError`` and ended ingest (issue 13,
failure 4). Here the attempt counter stops growing once the ceiling has reached
``max_s``, so any number of attempts gives the cap.
"""

from __future__ import annotations

import random

# Past this many doublings any sane ``min_s`` has long reached any sane ``max_s``
# (2**64 * 1 ms is 584 million years); a bound even if ``min_s`` is 0.
_MAX_EXPONENT = 64
# A factor above 16 overflows a float at the capped exponent (16**64 = 2**256 is fine,
# 1e308 is the limit); nobody backs off faster than that.
_MAX_FACTOR = 16.0


class Backoff:
    """``next()`` -> seconds to wait before the next attempt: random in
    ``[min_s, min(max_s, min_s * factor**n)]`` for the n-th failure; ``reset()`` after a
    success starts again at ``min_s``."""

    def __init__(self, *, min_s: float = 0.2, max_s: float = 30.0, factor: float = 2.0,
                 rng: random.Random | None = None) -> None:
        if not 0 <= min_s <= max_s:
            raise ValueError(f"backoff needs 0 <= min_s <= max_s, got {min_s} and {max_s}")
        if not 1.0 < factor <= _MAX_FACTOR:
            raise ValueError(f"backoff factor must be in (1, {_MAX_FACTOR}], got {factor}")
        self.min_s = min_s
        self.max_s = max_s
        self.factor = factor
        self._attempt = 0
        self._rng = rng or random.Random()

    @property
    def attempt(self) -> int:
        """Failures counted since the last ``reset`` (stops growing at the cap)."""
        return self._attempt

    def ceiling(self) -> float:
        """The largest delay the next ``next()`` can return."""
        return min(self.max_s, self.min_s * self.factor**self._attempt)

    def next(self) -> float:
        ceiling = self.ceiling()
        if ceiling < self.max_s and self._attempt < _MAX_EXPONENT:
            self._attempt += 1
        # Full jitter (never below min_s): a fleet that lost the same broker does not
        # come back in lockstep.
        return self.min_s + self._rng.random() * (ceiling - self.min_s)

    def reset(self) -> None:
        self._attempt = 0
