from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pricing.allocate import largest_remainder
from pricing.money import percent_of, round_half_up


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=30), st.data())
def test_shares_sum_exactly_and_never_exceed_weights(weights, data) -> None:
    whole = sum(weights)
    total = data.draw(st.integers(0, whole)) if whole else 0
    shares = largest_remainder(total, weights)
    assert sum(shares) == total
    assert all(0 <= s <= w for s, w in zip(shares, weights, strict=True))


def test_remainder_ties_go_to_the_lower_index() -> None:
    assert largest_remainder(1, [100, 100]) == [1, 0]
    assert largest_remainder(2, [1, 1, 1]) == [1, 1, 0]
    assert largest_remainder(10, [1, 2, 3]) == [2, 3, 5]  # 1.67, 3.33, 5.0 -> +1 to the .67


def test_zero_weights() -> None:
    assert largest_remainder(0, [0, 0]) == [0, 0]
    with pytest.raises(ValueError):
        largest_remainder(1, [0])


def test_half_up() -> None:
    assert round_half_up(5, 2) == 3
    assert round_half_up(4, 3) == 1
    assert percent_of(30, 500) == 2  # 1.5 -> 2
    assert percent_of(899, 1000) == 90  # 89.9 -> 90
    assert percent_of(1074, 1000) == 107  # 107.4 -> 107
