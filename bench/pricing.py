"""Pricing benchmark: baskets priced per second on one core, and p99 latency.

Workload (deterministic from ``seed``): a 2,000-sku catalog in 100 categories, a snapshot
of 500 promotions of every kind (markdowns, near-expiry, tier prices, buy X get Y,
bundles, gifts, thresholds with overlapping exclusivity groups, coupons, points and stored
value), and 1,000 distinct 20-line baskets, cycled. Baskets favour the 200 popular skus
most promotions are on, so every basket has 20+ applicable promotions and the best-price
search has real conflicts to settle. Members, coupons, points redemption and the time of
day (weekday, hour) vary per basket.

Measured in the same run, on the same baskets:
- ``pricing.price`` (the compiled engine when built, ``ENGINE_IMPL``): ``baskets_per_s``,
  ``p50_ms``, ``p99_ms``;
- the Python engine (``pricing.engine.price``, the reference): ``python_baskets_per_s``,
  ``python_p99_ms`` and ``speedup_vs_python``; every one of the 1,000 baskets is priced by
  both and the results must be equal;
- baseline: the Python engine handed the raw snapshot, so it compiles and scans all 500
  promotions on every call (what an engine without a compiled, indexed ruleset does).

Rates are wall-clock on one pinned CPU; ``cpu_baskets_per_s`` divides by the process's
CPU time instead, which is what one core can do when the machine is shared.

    python -m bench.pricing --json            # human summary, then one JSON line
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import time
from typing import Any

from pricing import (
    ENGINE_IMPL,
    Basket,
    Bundle,
    BundleComponent,
    BuyXGetY,
    Catalog,
    Conditions,
    Coupon,
    Gift,
    Item,
    Line,
    Markdown,
    Member,
    PointsEarn,
    PointsTender,
    PromotionSnapshot,
    Scope,
    Store,
    StoredValueTender,
    Threshold,
    TierPrice,
    compile,
    price,
)
from pricing import engine as python_engine
from pricing.ruleset import Ruleset

CURRENCY = "EUR"
N_SKUS = 2_000
N_CATS = 100
N_POPULAR = 300
N_BASKETS = 1_000
LINES = 20
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z, a Thursday
HOUR = 3_600_000


def sku(k: int) -> str:
    return f"sku-{k:05d}"


def cat(k: int) -> str:
    return f"cat-{k:02d}"


def make_catalog(rng: random.Random) -> Catalog:
    items = [
        Item(
            sku=sku(k),
            category=cat(k % N_CATS),
            price=rng.randrange(50, 5_000),
            earns_points=k % 97 != 0,
        )
        for k in range(N_SKUS)
    ]
    return Catalog.of(items, version=1, currency=CURRENCY)


def make_promotions(rng: random.Random) -> PromotionSnapshot:
    promos: list[Any] = []
    pop = [sku(k) for k in range(N_POPULAR)]

    def pick_skus(n: int) -> tuple[str, ...]:
        return tuple(rng.sample(pop, n))

    item_groups = ["deals-a", "deals-b", "deals-c", "deals-d"]
    for k in range(167):  # sku markdowns, some near-expiry, some weekday-only
        kw: dict[str, Any] = rng.choice(
            [
                {"percent_bp": rng.choice([500, 1000, 1500, 2500])},
                {"amount_off": rng.randrange(5, 80)},
            ]
        )
        cond = Conditions(weekdays=(rng.randrange(1, 8),)) if k % 10 == 0 else Conditions()
        promos.append(
            Markdown(
                id=f"md-{k:03d}",
                scope=Scope(skus=pick_skus(1)),
                near_expiry_within_min=24 * 60 if k % 7 == 0 else None,
                conditions=cond,
                group="markdown" if k % 3 else "",
                **kw,
            )
        )
    for k in range(15):
        promos.append(
            Markdown(
                id=f"mdc-{k:03d}",
                scope=Scope(categories=(cat(k),)),
                percent_bp=rng.choice([300, 500, 800]),
            )
        )
    for k in range(40):
        scope = Scope(skus=pick_skus(2)) if k % 2 else Scope(categories=(cat(k % N_CATS),))
        promos.append(
            TierPrice(
                id=f"tier-{k:03d}",
                scope=scope,
                percent_bp=rng.choice([500, 1000]),
                conditions=Conditions(tiers=("gold",) if k % 3 else ("gold", "silver")),
                combines_with=("*",) if k % 4 else (),
            )
        )
    for k in range(100):
        if k < 70:
            promo = BuyXGetY(
                id=f"bxgy-{k:03d}",
                buy=Scope(skus=pick_skus(2)),
                buy_qty=rng.choice([1, 2]),
                get_qty=1,
            )
        elif k < 90:
            promo = BuyXGetY(
                id=f"bxgy-{k:03d}",
                buy=Scope(categories=(cat(k % N_CATS),)),
                buy_qty=2,
                get_qty=1,
                get_percent_bp=5_000,
            )
        else:
            a, b = rng.sample(pop, 2)
            promo = BuyXGetY(
                id=f"bxgy-{k:03d}", buy=Scope(skus=(a,)), buy_qty=1, get=Scope(skus=(b,))
            )
        promos.append(
            promo.model_copy(update={"group": item_groups[k % 4], "priority": 50 + k % 5})
        )
    for k in range(60):
        if k % 2:
            a, b = rng.sample(pop, 2)
            comps: tuple[BundleComponent, ...] = (
                BundleComponent(scope=Scope(skus=(a,)), qty=1),
                BundleComponent(scope=Scope(skus=(b,)), qty=1),
            )
            bprice = rng.randrange(200, 4_000)
        else:
            comps = (BundleComponent(scope=Scope(categories=(cat(k % N_CATS),)), qty=3),)
            bprice = rng.randrange(300, 6_000)
        promos.append(
            Bundle(
                id=f"bundle-{k:03d}", components=comps, price=bprice, group=item_groups[(k + 1) % 4]
            )
        )
    for k in range(20):
        a, b = rng.sample(pop, 2)
        promos.append(Gift(id=f"gift-{k:03d}", trigger=Scope(skus=(a,)), min_qty=1, gift_sku=b))
    thr_groups = ["basket-1", "basket-2", "basket-3"]
    for k in range(50):
        scope = Scope() if k % 8 == 0 else Scope(categories=(cat(k % N_CATS),))
        cond = Conditions(weekdays=(3,), member_only=True) if k % 10 == 0 else Conditions()
        if k % 3 == 0:
            kw = {"percent_bp": rng.choice([300, 500, 1000]), "min_spend": rng.randrange(0, 3_000)}
        else:
            kw = {
                "amount_off": rng.randrange(100, 800),
                "min_spend": rng.randrange(1_000, 8_000),
                "repeat": k % 3 == 1,
            }
        promos.append(
            Threshold(
                id=f"thr-{k:03d}",
                scope=scope,
                group=thr_groups[k % 3],
                combines_with=("*",) if k % 5 else ("basket-1",),
                conditions=cond,
                **kw,
            )
        )
    for k in range(40):
        kw = rng.choice(
            [
                {"amount_off": rng.randrange(100, 500), "min_spend": 2_000},
                {"percent_bp": 1_000},
                {"amount_off": 100, "max_units": 2, "scope": Scope(categories=(cat(k % 10),))},
            ]
        )
        promos.append(
            Coupon(id=f"cpn-{k:03d}", code=f"CODE{k % 10}", group="coupons" if k % 2 else "", **kw)
        )
    promos.append(PointsEarn(id="earn-base", points=1, per_minor=100))
    promos.append(
        PointsEarn(
            id="earn-gold",
            points=2,
            per_minor=100,
            group="earn-base",
            conditions=Conditions(tiers=("gold",)),
        )
    )
    promos.append(
        PointsEarn(id="earn-dairy", points=1, per_minor=100, scope=Scope(categories=(cat(1),)))
    )
    promos.append(
        PointsEarn(
            id="earn-memberday", points=1, per_minor=100, conditions=Conditions(weekdays=(3,))
        )
    )
    promos.append(
        PointsTender(
            id="points", block_points=100, block_minor=100, max_share_bp=5_000, min_points=100
        )
    )
    promos.append(StoredValueTender(id="stored-value"))
    return PromotionSnapshot(version=1, currency=CURRENCY, promotions=tuple(promos))


def make_baskets(rng: random.Random) -> list[tuple[Basket, Member | None, int]]:
    out = []
    for b in range(N_BASKETS):
        lines = []
        for k in range(LINES):
            pick = rng.randrange(N_POPULAR) if rng.random() < 0.5 else rng.randrange(N_SKUS)
            expiry = T0 + rng.randrange(0, 72) * HOUR if rng.random() < 0.1 else None
            lines.append(
                Line(
                    line_id=f"{b}-{k}",
                    sku=sku(pick),
                    qty=rng.choice([1, 1, 1, 2, 2, 3, 4]),
                    best_before_ms=expiry,
                )
            )
        member = None
        if rng.random() < 0.6:
            member = Member(
                id=f"m{b}",
                tier=rng.choice([None, "silver", "gold"]),
                currency=CURRENCY,
                points_balance=rng.randrange(0, 5_000),
                stored_value_balance=rng.randrange(0, 5_000),
            )
        basket = Basket(
            id=f"b{b}",
            currency=CURRENCY,
            lines=tuple(lines),
            coupons=(f"CODE{rng.randrange(10)}",) if rng.random() < 0.3 else (),
            points_to_redeem=rng.randrange(0, 2_000) if member and rng.random() < 0.3 else 0,
            stored_value_to_use=rng.randrange(0, 3_000) if member and rng.random() < 0.2 else 0,
        )
        now = T0 + rng.randrange(0, 14 * 24) * HOUR + rng.randrange(0, 3_600_000)
        out.append((basket, member, now))
    return out


def applicable(rs: Ruleset, basket: Basket, catalog: Catalog) -> int:
    """Promotions whose scope touches the basket (before time and member conditions)."""
    seen = {r.ordinal for r, _, _ in rs.everywhere}
    for ln in basket.lines:
        for e in rs.by_sku.get(ln.sku, ()) + rs.by_cat.get(catalog.items[ln.sku].category, ()):
            seen.add(e[0].ordinal)
    for code in basket.coupons:
        seen.update(r.ordinal for r in rs.coupons.get(code, ()))
    return len(seen) + len(rs.earn) + len(rs.points_tender) + len(rs.stored_value)


def _pin_one_core() -> tuple[str, set[int] | None]:
    """Pin this process to one CPU (restored afterwards); pricing is single-threaded."""
    if hasattr(os, "sched_setaffinity"):
        before = os.sched_getaffinity(0)
        cpu = min(before)
        os.sched_setaffinity(0, {cpu})
        return f"pinned to cpu {cpu}", before
    return "not pinned (no sched_setaffinity)", None


def _measure(fn: Any, work: list[Any], seconds: float) -> tuple[int, float, float, list[int]]:
    """Baskets priced, wall seconds, CPU seconds, per-call latencies (ns)."""
    lat: list[int] = []
    n = 0
    clock = time.perf_counter_ns
    cpu = time.process_time()
    start = clock()
    deadline = start + int(seconds * 1e9)
    while True:
        for args in work:
            t = clock()
            fn(*args)
            lat.append(clock() - t)
        n += len(work)
        if clock() >= deadline:
            break
    return n, (clock() - start) / 1e9, time.process_time() - cpu, lat


def _pct(lat: list[int], q: float) -> float:
    s = sorted(lat)
    return s[min(len(s) - 1, int(q * len(s)))] / 1e6


def run(*, seconds: float = 5.0, seed: int = 1) -> dict[str, Any]:
    """Measure; returns the figures (``baskets_per_s``, ``p99_ms``, baseline, ratio...)."""
    pinned, before = _pin_one_core()
    try:
        return _run(seconds, seed, pinned)
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)


def _run(seconds: float, seed: int, pinned: str) -> dict[str, Any]:
    rng = random.Random(seed)
    catalog = make_catalog(rng)
    snapshot = make_promotions(rng)
    store = Store(id="store-1", currency=CURRENCY, utc_offset_min=60)
    t = time.perf_counter()
    ruleset = compile(snapshot)
    compile_ms = (time.perf_counter() - t) * 1e3
    baskets = make_baskets(rng)
    work = [(b, catalog, ruleset, m, now, store) for b, m, now in baskets]
    n_applicable = [applicable(ruleset, b, catalog) for b, _, _ in baskets]

    results = [price(*args) for args in work]  # warm-up, and the reference for the others
    search_exact = sum(r.exact for r in results)
    applied = [len(r.applied) for r in results]
    python_price = python_engine.price
    checked = 0  # baskets the Python engine priced to the compiled engine's exact result
    if price is not python_price:  # the compiled engine: the Python one must agree
        for args, ref in zip(work, results, strict=True):
            if python_price(*args) != ref:
                raise AssertionError(f"compiled and Python engines disagree on {args[0].id}")
            checked += 1

    gc.collect()
    n, elapsed, cpu, lat = _measure(price, work, seconds)
    if price is python_price:
        pn, p_elapsed, p_lat = n, elapsed, lat
    else:
        gc.collect()
        pn, p_elapsed, _, p_lat = _measure(python_price, work, max(0.5, seconds / 2))

    naive_work = [(b, catalog, snapshot, m, now, store) for b, m, now in baskets[:50]]
    for naive_args, ref in zip(naive_work, results, strict=False):
        if python_price(*naive_args) != ref:
            raise AssertionError("naive and compiled pricing disagree")
    nb, nb_elapsed, _, _ = _measure(python_price, naive_work, max(0.5, seconds / 5))

    rate = n / elapsed
    python_rate = pn / p_elapsed
    naive_rate = nb / nb_elapsed
    return {
        "engine": ENGINE_IMPL,
        "baskets_per_s": round(rate, 1),
        "p50_ms": round(_pct(lat, 0.50), 4),
        "p99_ms": round(_pct(lat, 0.99), 4),
        "mean_us": round(elapsed / n * 1e6, 2),
        "cpu_baskets_per_s": round(n / cpu, 1) if cpu > 0 else None,
        "baskets_priced": n,
        "seconds": round(elapsed, 2),
        "python_baskets_per_s": round(python_rate, 1),
        "python_p99_ms": round(_pct(p_lat, 0.99), 4),
        "speedup_vs_python": round(rate / python_rate, 1),
        "results_equal": True,  # else the run raised above
        "results_checked": checked,
        "distinct_baskets": len(work),
        "lines_per_basket": LINES,
        "promotions": len(snapshot.promotions),
        "applicable_min": min(n_applicable),
        "applicable_mean": round(sum(n_applicable) / len(n_applicable), 1),
        "applied_mean": round(sum(applied) / len(applied), 1),
        "search_exact_share": round(search_exact / len(results), 3),
        "compile_ms": round(compile_ms, 1),
        "baseline": "Python engine on the raw snapshot: compile + scan all promotions per call",
        "baseline_baskets_per_s": round(naive_rate, 1),
        "speedup": round(rate / naive_rate, 1),
        "target_baskets_per_s": 20_000,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu": pinned,
        "seed": seed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="storefleet bench pricing", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--json", action="store_true", help="end with one JSON line (always printed last)"
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    r = run(seconds=args.seconds, seed=args.seed)
    print(
        f"pricing ({r['engine']} engine): {r['baskets_per_s']:,.0f} baskets/s on one core "
        f"(mean {r['mean_us']} us, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms), "
        f"{r['lines_per_basket']} lines x {r['promotions']} promotions, "
        f"{r['applicable_mean']} applicable per basket (min {r['applicable_min']}); "
        f"Python engine {r['python_baskets_per_s']:,.0f}/s (x{r['speedup_vs_python']}, "
        f"results equal); baseline {r['baseline_baskets_per_s']:,.0f}/s, "
        f"speedup x{r['speedup']}"
    )
    if args.json:
        print(json.dumps(r, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
