"""Best-price search: optimal against brute force, deterministic, bounded."""

from __future__ import annotations

from itertools import combinations
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from pricing.rules.base import Option, Rule
from pricing.search import MAX_NODES, choose


class _Rule:
    def __init__(self, ordinal: int) -> None:
        self.ordinal = ordinal
        self.id = f"r{ordinal:02d}"


def _options(specs: list[tuple[int, list[int]]]) -> list[Option]:
    return [
        Option(cast(Rule, _Rule(k)), v, lines, [1] * len(lines), 1, "")
        for k, (v, lines) in enumerate(specs)
    ]


def _always(a: Option, b: Option) -> bool:
    return True


def _ok(chosen: list[Option]) -> bool:
    return all(not (a.mask & b.mask) for a, b in combinations(chosen, 2))


option_specs = st.lists(
    st.tuples(st.integers(1, 50), st.lists(st.integers(0, 7), min_size=1, max_size=3, unique=True)),
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(option_specs)
def test_matches_brute_force(specs) -> None:
    options = _options(specs)
    chosen, exact = choose(options, _always)
    assert exact and _ok(chosen)
    best = max(
        (
            sum(o.value for o in sub)
            for r in range(len(options) + 1)
            for sub in combinations(options, r)
            if _ok(list(sub))
        ),
        default=0,
    )
    assert sum(o.value for o in chosen) == best


def test_exhaustive_beats_greedy() -> None:
    # the 300 option touches both lines; greedy would take it, the pair is worth 325
    options = _options([(150, [0]), (175, [1]), (300, [0, 1])])
    chosen, _ = choose(options, _always)
    assert [o.value for o in chosen] == [150, 175]


def test_ties_go_to_the_first_in_canonical_order() -> None:
    options = _options([(50, [0]), (50, [0])])
    chosen, _ = choose(options, _always)
    assert [o.rule.id for o in chosen] == ["r00"]  # type: ignore[attr-defined]


def test_past_the_bound_a_valid_greedy_or_better_answer() -> None:
    # 40 equal options on a ring of lines: pruning is weak, the node budget runs out
    specs = [(10 + k % 3, [k, (k + 1) % 40]) for k in range(40)]
    options = _options(specs)
    chosen, exact = choose(options, _always)
    assert not exact
    assert _ok(chosen)
    greedy: list[Option] = []
    for o in sorted(options, key=lambda o: -o.value):
        if all(not (o.mask & g.mask) for g in greedy):
            greedy.append(o)
    assert sum(o.value for o in chosen) >= sum(o.value for o in greedy)
    assert choose(options, _always) == (chosen, exact)  # deterministic
    assert MAX_NODES == 4_096
