"""Exponential backoff with full jitter, for the supervising reconnect loops."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial_s: float = 0.2
    max_s: float = 30.0
    factor: float = 2.0
    _attempt: int = field(default=0, init=False)

    def next(self) -> float:
        """Seconds to wait before the next attempt; grows until ``reset``."""
        ceiling = min(self.max_s, self.initial_s * self.factor**self._attempt)
        self._attempt += 1
        # Full jitter: N workers that lost the same broker do not return in lockstep.
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0
