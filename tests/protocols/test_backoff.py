"""The one capped backoff (protocols.backoff) and its re-exports (decision 0031)."""

from __future__ import annotations

import random

import pytest

from protocols.backoff import Backoff


def test_attempt_ten_thousand_gives_the_cap_without_overflow() -> None:
    # Issue 13 failure 4: 2.0 ** 1024 raised OverflowError and ended cloud ingest.
    backoff = Backoff(min_s=0.2, max_s=30.0, rng=random.Random(7))
    delays = [backoff.next() for _ in range(10_000)]
    assert backoff.ceiling() == 30.0
    assert all(0.2 <= d <= 30.0 for d in delays)
    assert max(delays[-100:]) > 15  # still jittered up to the cap, not stuck low


def test_defaults_reach_the_cap() -> None:
    default = Backoff()  # ingest's default construction (cloud/backoff.py overflowed here)
    for _ in range(2_000):
        default.next()
    assert default.ceiling() == default.max_s


def test_grows_with_jitter_and_resets() -> None:
    backoff = Backoff(min_s=0.5, max_s=8, rng=random.Random(1))
    ceilings = []
    for _ in range(8):
        ceilings.append(backoff.ceiling())
        assert 0.5 <= backoff.next() <= ceilings[-1]
    assert ceilings[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert ceilings[5:] == [8.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.next() == 0.5  # first attempt: ceiling == min


def test_zero_minimum_stays_bounded() -> None:
    backoff = Backoff(min_s=0.0, max_s=1.0)
    for _ in range(1_000):
        assert backoff.next() == 0.0


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"min_s": 2.0, "max_s": 1.0}, "min_s"), ({"min_s": -1.0}, "min_s"),
     ({"factor": 1.0}, "factor"), ({"factor": 1e6}, "factor")],
)
def test_refuses_settings_that_cannot_back_off(kw: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backoff(**kw)  # type: ignore[arg-type]  # wrong on purpose
