"""Exponential backoff with full jitter, for the reconnect loops."""

from __future__ import annotations

import random


class Backoff:
    """``next()`` -> seconds to wait: random in [min, min * 2**n], capped at ``max_s``."""

    def __init__(self, *, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self._min = min_s
        self._max = max_s
        self._attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self._max, self._min * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 32)  # 2**32 * min_s is past any sane max_s
        # Full jitter (never below min_s) spreads a fleet's reconnects after a broker restart.
        return self._min + self._rng.random() * max(0.0, ceiling - self._min)

    def reset(self) -> None:
        self._attempt = 0
