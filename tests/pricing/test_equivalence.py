"""Both engine implementations (the optimised Python engine and the compiled one) against
the frozen pre-optimisation engine: identical output.

Both price the same inputs and must return equal ``PricedBasket`` values (every line,
allocation, explanation and flag). Inputs: the benchmark workload (2,000 baskets of 20
lines against ~500 promotions of every kind, two seeds, coupons and members mixed in)
and hypothesis-generated small snapshots over the golden catalog, which reach the odd
corners (new prices, item coupons, gifts with repeat, stacking groups).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import pricing as bench
from pricing import Store, compile
from tests.pricing.build_golden import CATALOG
from tests.pricing.engines import IMPLEMENTATIONS, engine_price
from tests.pricing.reference.engine import price as reference_price
from tests.pricing.reference.ruleset import compile as reference_compile
from tests.pricing.strategies import NOW, STORE_MODEL, baskets, members, snapshots


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("seed", [1, 2])
def test_bench_workload_prices_identically(seed: int, impl: str) -> None:
    price = engine_price(impl)
    rng = random.Random(seed)
    catalog = bench.make_catalog(rng)
    snapshot = bench.make_promotions(rng)
    store = Store(id="store-1", currency=bench.CURRENCY, utc_offset_min=60)
    fast, ref = compile(snapshot), reference_compile(snapshot)
    differ = []
    for basket, member, now in bench.make_baskets(rng):
        got = price(basket, catalog, fast, member, now, store)
        want = reference_price(basket, catalog, ref, member, now, store)
        if got != want:
            differ.append(basket.id)
    assert differ == []


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(baskets(), min_size=1, max_size=3), snapshots(), members)
def test_generated_snapshots_price_identically(impl, bs, snap, member) -> None:
    price = engine_price(impl)
    fast, ref = compile(snap), reference_compile(snap)
    for basket in bs:
        got = price(basket, CATALOG, fast, member, NOW, STORE_MODEL)
        assert got == reference_price(basket, CATALOG, ref, member, NOW, STORE_MODEL)


def test_the_check_can_fail() -> None:
    """A basket priced differently is noticed (the comparison is not vacuous)."""
    price = engine_price("python")
    rng = random.Random(3)
    catalog = bench.make_catalog(rng)
    snapshot = bench.make_promotions(rng)
    store = Store(id="store-1", currency=bench.CURRENCY, utc_offset_min=60)
    basket, member, now = bench.make_baskets(rng)[0]
    got = price(basket, catalog, compile(snapshot), member, now, store)
    want = reference_price(basket, catalog, reference_compile(snapshot), member, now + 1, store)
    assert got._replace(total=got.total + 1) != want
