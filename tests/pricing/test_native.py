"""The compiled engine (``pricing._cengine``) against the Python reference: identical.

Every input is priced by both and must give an equal ``PricedBasket`` (lines,
allocations, explanation order, ``exact``) or raise the same exception with the same
attributes. Inputs: the benchmark workload (two seeds), hypothesis-generated snapshots,
baskets, members, coupons and tenders over the golden catalog, the same with the basket
broken (unknown sku, duplicate line ids, a currency mismatch anywhere), and values
beyond the C engine's integer bounds (priced by the Python engine, counted as fallbacks).
"""

from __future__ import annotations

import os
import random
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pricing
from bench import pricing as bench
from pricing import (
    Basket,
    Catalog,
    Item,
    Line,
    Markdown,
    Member,
    PromotionSnapshot,
    Scope,
    Store,
    Threshold,
    compile,
    engine,
    native,
)
from tests.pricing.build_golden import CATALOG, CUR
from tests.pricing.engines import engine_price, required
from tests.pricing.strategies import NOW, STORE_MODEL, baskets, members, snapshots

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcome(fn: Any, *args: Any) -> Any:
    """The result, or the exception as (type, args, attributes)."""
    try:
        return fn(*args)
    except Exception as err:  # compared, not swallowed: the test asserts on it
        return (type(err), err.args, sorted(vars(err).items()))


def _same(*args: Any) -> Any:
    compiled = engine_price("compiled")
    want = _outcome(engine.price, *args)
    got = _outcome(compiled, *args)
    assert got == want
    if not isinstance(want, tuple) or not isinstance(want[0], type):
        assert type(got) is type(want)  # a PricedBasket, not a tuple that compares equal
    return got


def test_compiled_engine_is_built_where_required() -> None:
    """CI (STOREFLEET_REQUIRE_SERVICES=1) must run the compiled engine, never fall back."""
    if not required() and native.compiled is None:
        pytest.skip(f"compiled pricing engine not built: {native.IMPORT_ERROR}")
    assert native.compiled is not None, f"pricing._cengine not importable: {native.IMPORT_ERROR}"
    assert pricing.ENGINE_IMPL in ("compiled", "python")
    if native.ENV not in os.environ:
        assert pricing.ENGINE_IMPL == "compiled"
        assert pricing.price is native.compiled.price


def test_engine_choice() -> None:
    assert native.select("auto", available=True) == "compiled"
    assert native.select("auto", available=False) == "python"
    assert native.select("python", available=True) == "python"
    assert native.select("compiled", available=True) == "compiled"
    with pytest.raises(ImportError, match="compiled"):
        native.select("compiled", available=False)
    with pytest.raises(ValueError, match="STOREFLEET_PRICING_ENGINE"):
        native.select("fast", available=True)
    # both implementations are the same engine version: a sale records no implementation
    assert pricing.ENGINE_VERSION == "1.0.0"


@pytest.mark.parametrize("seed", [1, 2])
def test_bench_workload_prices_identically(seed: int) -> None:
    compiled = engine_price("compiled")
    rng = random.Random(seed)
    catalog = bench.make_catalog(rng)
    snapshot = bench.make_promotions(rng)
    store = Store(id="store-1", currency=bench.CURRENCY, utc_offset_min=60)
    rs = compile(snapshot)
    differ = []
    for basket, member, now in bench.make_baskets(rng):
        if compiled(basket, catalog, rs, member, now, store) != engine.price(
            basket, catalog, rs, member, now, store
        ):
            differ.append(basket.id)
    assert differ == []
    assert rs.native.usable and rs.native.fallbacks == 0  # all of it ran in C


@SETTINGS
@given(st.lists(baskets(), min_size=1, max_size=3), snapshots(), members)
def test_generated_inputs_price_identically(bs, snap, member) -> None:
    compiled = engine_price("compiled")
    rs = compile(snap)
    for basket in bs:
        got = compiled(basket, CATALOG, rs, member, NOW, STORE_MODEL)
        assert got == engine.price(basket, CATALOG, rs, member, NOW, STORE_MODEL)
    assert rs.native.usable and rs.native.fallbacks == 0
    # the raw snapshot (compiled on the spot) gives the same answer
    assert compiled(bs[0], CATALOG, snap, member, NOW, STORE_MODEL) == engine.price(
        bs[0], CATALOG, snap, member, NOW, STORE_MODEL
    )


@SETTINGS
@given(
    baskets(),
    snapshots(),
    members,
    st.sampled_from(["sku", "dup", "catalog", "store", "member", "snapshot"]),
    st.integers(-(2**62), 2**62),
    st.integers(-14 * 60, 14 * 60),
)
def test_errors_and_odd_inputs_are_the_references(basket, snap, member, broken, now, offset):
    """Unknown sku, duplicate line ids, currency mismatches; any time and store offset."""
    catalog, store = CATALOG, STORE_MODEL.model_copy(update={"utc_offset_min": offset})
    lines = list(basket.lines)
    if broken == "sku":
        lines.append(Line(line_id="zz", sku="no-such-sku", qty=1))
    elif broken == "dup":
        lines.append(lines[0].model_copy(update={"sku": sorted(CATALOG.items)[-1]}))
    elif broken == "catalog":
        catalog = CATALOG.model_copy(update={"currency": "USD"})
    elif broken == "store":
        store = store.model_copy(update={"currency": "USD"})
    elif broken == "member" and member is not None:
        member = member.model_copy(update={"currency": "USD"})
    elif broken == "snapshot":
        snap = snap.model_copy(update={"currency": "USD"})
    basket = basket.model_copy(update={"lines": tuple(lines)})
    _same(basket, catalog, compile(snap), member, now, store)


def _one_line_case(price: int, qty: int, *, amount_off: int = 10) -> tuple[Any, ...]:
    catalog = Catalog.of([Item(sku="a", category="c", price=price)], version=1, currency=CUR)
    snap = PromotionSnapshot(
        version=1,
        currency=CUR,
        promotions=(
            Markdown(id="md", scope=Scope(skus=("a",)), amount_off=amount_off),
            Threshold(id="thr", percent_bp=1_000, min_spend=1),
        ),
    )
    basket = Basket(currency=CUR, lines=(Line(line_id="1", sku="a", qty=qty),))
    member = Member(id="m", currency=CUR, points_balance=10**30)
    return basket, catalog, compile(snap), member, NOW, STORE_MODEL


@pytest.mark.parametrize(
    "price, qty, amount_off, in_c",
    [
        (1_000, 3, 10, True),
        (2**40, 3, 10, False),  # a price beyond the C bounds: the basket goes to Python
        (1_000, 2**20, 10, False),  # so does a quantity
        (1_000, 3, 2**40, False),  # and a snapshot with a huge amount, for every basket
    ],
)
def test_values_beyond_the_c_bounds_are_priced_by_python(price, qty, amount_off, in_c) -> None:
    args = _one_line_case(price, qty, amount_off=amount_off)
    _same(*args)
    assert (args[2].native.fallbacks == 0) is in_c


def test_no_memory_grows_over_thousands_of_baskets() -> None:
    """Per-call buffers are freed and no reference is leaked (tracemalloc sees PyMem_*)."""
    compiled = engine_price("compiled")
    rng = random.Random(5)
    catalog = bench.make_catalog(rng)
    rs = compile(bench.make_promotions(rng))
    store = Store(id="store-1", currency=bench.CURRENCY, utc_offset_min=60)
    work = [(b, catalog, rs, m, now, store) for b, m, now in bench.make_baskets(rng)]
    for args in work:  # fills the per-sku line entries once
        compiled(*args)
    # Only what the engine's calls allocate: tracemalloc sees every thread of the process,
    # and a test worker may still run another test's background threads (a CI run counted
    # 150 KB that were not ours). Native allocations are attributed to the calling frame.
    ours = [tracemalloc.Filter(True, __file__), tracemalloc.Filter(True, "*/pricing/*")]
    tracemalloc.start()
    try:
        compiled(*work[0])
        before = tracemalloc.take_snapshot().filter_traces(ours)
        for _ in range(3):
            for args in work:
                compiled(*args)
        after = tracemalloc.take_snapshot().filter_traces(ours)
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 64 * 1024, f"{grown} bytes more after 3,000 baskets"


def test_result_objects_are_freed_exactly() -> None:
    """The compiled engine builds its NamedTuples untracked by the GC and frees them with
    its own tp_dealloc: every object and every reference to the result types goes away,
    for its own results, for ones built in Python, and for instances of a subclass."""
    import gc
    import sys

    from pricing.result import Allocation, Applied, PricedBasket, PricedLine

    compiled = engine_price("compiled")
    rng = random.Random(9)
    catalog = bench.make_catalog(rng)
    rs = compile(bench.make_promotions(rng))
    store = Store(id="store-1", currency=bench.CURRENCY, utc_offset_min=60)
    work = [(b, catalog, rs, m, now, store) for b, m, now in bench.make_baskets(rng)[:200]]
    types = (Allocation, Applied, PricedLine, PricedBasket)
    kept = compiled(*work[0])
    assert not gc.is_tracked(kept) and not gc.is_tracked(kept.lines[0])
    assert kept == engine.price(*work[0])  # and equal to a GC-tracked, Python-built one

    class Tagged(Allocation):  # a subclass (with __dict__): subtype_dealloc, then ours
        note: list[object]

    gc.collect()
    refs = [sys.getrefcount(t) for t in types]
    tag_refs = sys.getrefcount(Tagged)
    for _ in range(3):
        for args in work:
            result = compiled(*args)
            python_built = PricedBasket.from_dict(result.to_dict())
            assert python_built == result
        tagged = [Tagged("p", "item", k) for k in range(100)]
        for one in tagged:
            one.note = [one]  # a reference cycle through the instance dict: the GC frees it
        del result, python_built, tagged, one
        gc.collect()
    assert [sys.getrefcount(t) for t in types] == refs
    assert sys.getrefcount(Tagged) == tag_refs
    assert kept == engine.price(*work[0])  # still intact after the others were freed
