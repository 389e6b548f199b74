"""Best price among options that exclude each other: bounded exhaustive search.

Options conflict when they touch a common line and may not share it (item promotions
never share a line; thresholds and coupons share one when their groups combine). The
chosen set is the one with the largest total discount, i.e. the lowest total for the
shopper.

Each connected component of the conflict graph is searched on its own by depth-first
branch and bound over options ordered by (value desc, priority, promotion id), trying
"take it" before "leave it". The first leaf reached is therefore the greedy choice, and
a set replaces the best so far only when it is strictly better, so among equal totals
the one that is first in that canonical order wins: deterministic, ties by id.

Bound: at most ``MAX_NODES`` search nodes per component. Components that need more (in
practice more than about 16 heavily overlapping options) keep the best set found when
the budget ran out, which is never worse than the deterministic greedy choice, and the
priced basket records ``exact=False``.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.pricing.reference.rules.base import Option

MAX_NODES = 4_096  # 2**12: a 12-option component is always searched to the end


def choose(
    options: list[Option], conflict: Callable[[Option, Option], bool] | None
) -> tuple[list[Option], bool]:
    """The best conflict-free subset of ``options`` and whether it is proven optimal.

    ``conflict(a, b)`` is asked only for options that share a line; ``None`` means options
    sharing a line always conflict.
    """
    m = len(options)
    if m <= 1:
        return options, True
    order = sorted(options, key=lambda o: -o.value)  # stable: ties keep (priority, id)
    conf = [0] * m
    for a in range(m):
        ma = order[a].mask
        for b in range(a + 1, m):
            if ma & order[b].mask and (conflict is None or conflict(order[a], order[b])):
                conf[a] |= 1 << b
                conf[b] |= 1 << a
    if not any(conf):
        return sorted(options, key=lambda o: o.rule.ordinal), True
    chosen: list[Option] = []
    exact = True
    seen = 0
    for start in range(m):
        if seen >> start & 1:
            continue
        comp = 1 << start
        frontier = comp
        while frontier:
            low = frontier & -frontier
            frontier ^= low
            new = conf[low.bit_length() - 1] & ~comp
            comp |= new
            frontier |= new
        seen |= comp
        if comp & (comp - 1) == 0:  # a single option, nothing to decide
            chosen.append(order[start])
            continue
        picked, proven = _search(comp, conf, [o.value for o in order])
        exact = exact and proven
        chosen.extend(order[k] for k in range(m) if picked >> k & 1)
    chosen.sort(key=lambda o: o.rule.ordinal)
    return chosen, exact


def _search(comp: int, conf: list[int], values: list[int]) -> tuple[int, bool]:
    best_set = 0
    best_value = -1
    nodes = 0

    def walk(cands: int, taken: int, value: int) -> None:
        nonlocal best_set, best_value, nodes
        nodes += 1
        if not cands:
            if value > best_value:
                best_value, best_set = value, taken
            return
        bound = value
        rest = cands
        while rest:
            low = rest & -rest
            rest ^= low
            bound += values[low.bit_length() - 1]
        if bound <= best_value or nodes > MAX_NODES:
            return
        low = cands & -cands
        k = low.bit_length() - 1
        walk(cands & ~conf[k] & ~low, taken | low, value + values[k])
        walk(cands & ~low, taken, value)

    walk(comp, 0, 0)
    return best_set, nodes <= MAX_NODES
