"""A department store's price book: 1,000,000 SKUs from HQ to a store's till, and a
10,000-change delta after it (decision 0047).

What runs: the cloud as its own process (``storefleet cloud serve``, SQLite, its own
Mosquitto for the announcements), and in this process the box's side: the till's
``PriceBookCache`` with its SQLite ``PriceStore``, downloading over real HTTP.

- ``publish_s``: HQ's ``POST /api/v1/price-books`` of the whole book (validated, stored).
- ``build_s``: the cloud building the store's wire book: the book read back, columns,
  JSON, zstd, sha256 and the signed header (the first ``GET .../price-book/wire``).
- ``full_apply_s``: at the store: header and body downloaded, signature and sha256
  checked, the body inflated, applied into SQLite in one transaction, the till's
  catalog swapped. Target: under 10 s.
- ``delta_apply_s``: the same for a delta of ``delta_changes`` (upserts and removals)
  published on top. Target: under 1 s.
- ``max_till_pause_ms``: the longest the box's event loop was late (a sale priced every
  millisecond by the pricing engine, with the old book and then the new) while either
  book was applied. Target: 50 ms. ``full_till_pause_ms`` and ``delta_till_pause_ms``:
  the same for each apply alone. ``till_sales_during_apply``: the sales so priced.
- ``wire_bytes`` against ``raw_json_bytes`` (the items as JSON, what the old
  full-document path carried) and ``baseline_gzip_bytes`` (that JSON gzipped, level 6,
  measured in the same run).

    python -m bench.pricebook --json                  # 1,000,000 SKUs, 10,000 changes
    storefleet bench pricebook --json --skus 20000 --changes 1000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from bench._services import ADMIN_TOKEN, DEVICE_TOKEN, BenchError, cloud, mosquitto
from edge_agent.pos.cache import CacheMetrics, CatalogCache, CloudApi, load_keys
from edge_agent.pos.pricebook import PriceBookCache
from edge_agent.pos.pricestore import PriceStore
from pricing import Basket, Catalog, Item, Line, PromotionSnapshot, Store, compile, price

STORE = "bench-store"
CATEGORIES = ("grocery", "dairy", "bakery", "household", "apparel", "toys", "garden")
TICK_S = 0.001  # the till prices a sale every millisecond while a book applies


def book(skus: int) -> list[dict[str, Any]]:
    """Deterministic items with department-store shapes: ids, names, prices."""
    return [{"sku": f"{i:010d}", "name": f"Article {i} {CATEGORIES[i % 7]} size {i % 13}",
             "category": CATEGORIES[i % 7], "price": 99 + (i * 7919) % 100_000,
             "earns_points": i % 11 != 0} for i in range(skus)]


async def till_while(work: Any, cache: PriceBookCache) -> tuple[Any, float, float, int]:
    """Run ``work`` while the loop prices a sale every ``TICK_S``; its result, seconds,
    the longest pause of the loop beyond the tick (ms) and the sales priced."""
    rules = compile(PromotionSnapshot(version=1, currency="EUR"))
    store = Store(id=STORE, currency="EUR")
    basket = Basket(id="b", currency="EUR", lines=(Line(line_id="1", sku="0000000007", qty=2),))
    done = asyncio.Event()
    worst = 0.0
    sales = 0
    start = time.perf_counter()

    async def till() -> None:
        nonlocal worst, sales
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(TICK_S)
            catalog = cache.catalog.catalog
            if catalog is not None:
                price(basket, catalog, rules, None, 0, store)
                sales += 1
            late = time.perf_counter() - t0 - TICK_S
            worst = max(worst, late)
            if late > 0.03:  # where in the apply the till waited (stderr, not the JSON)
                print(f"till waited {late * 1000:.1f} ms at {t0 - start:.2f} s "
                      f"(book v{cache.version})", file=sys.stderr)

    task = asyncio.create_task(till(), name="bench-till")
    t0 = time.perf_counter()
    try:
        result = await work
    finally:
        seconds = time.perf_counter() - t0
        done.set()
        await task
    return result, seconds, worst * 1000, sales


async def measure(tmp: Path, *, skus: int, changes: int) -> dict[str, Any]:
    items = book(skus)
    raw = json.dumps(items, separators=(",", ":")).encode()
    t0 = time.perf_counter()
    gz = gzip.compress(raw, compresslevel=6)
    gzip_s = time.perf_counter() - t0
    raw_json_bytes = len(raw)
    removals = changes // 20  # 5 % of a delta drops items, the rest reprices
    upserts = [{**i, "price": i["price"] + 1} for i in items[: changes - removals]]
    removed = [i["sku"] for i in items[skus - removals:]] if removals else []
    body = json.dumps({"store_id": None, "currency": "EUR", "items": items})
    # The box's process does not hold HQ's million items: dropped before it runs, so the
    # garbage collector's full passes during the apply scan what a box would hold.
    del items, raw
    gc.collect()
    with mosquitto(tmp / "mqtt") as broker, cloud(tmp / "cloud", broker=broker) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=600,
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as hq:
            keys = (await hq.get("/api/v1/promotions/keys")).json()
            t0 = time.perf_counter()
            r = await hq.post("/api/v1/price-books", content=body,
                              headers={"content-type": "application/json"})
            publish_s = time.perf_counter() - t0
            del body
            gc.collect()
            if r.status_code != 201:
                raise BenchError(f"publish: {r.status_code} {r.text[:300]}")
            t0 = time.perf_counter()
            header = await hq.get(f"/api/v1/stores/{STORE}/price-book/wire")
            build_s = time.perf_counter() - t0
            if header.status_code != 200:
                raise BenchError(f"wire: {header.status_code} {header.text[:300]}")
            wire_bytes = header.json()["header"]["payload"]["body_size"]

            box = tmp / "box"
            cache = PriceBookCache(
                box / "pricebook.json", store_id=STORE,
                keys=load_keys([k["public_key"] for k in keys]),
                catalog=CatalogCache(box / "catalog.json"),
                metrics=CacheMetrics(CollectorRegistry()), store=PriceStore(box / "book.db"))
            # The store's old book (as provisioned): the till prices with it while the
            # full book applies, then with the new one.
            cache.catalog.catalog = Catalog.of([Item(sku="0000000007", price=1)], version=0,
                                               currency="EUR")
            api = CloudApi(url, token=DEVICE_TOKEN, timeout_s=600)
            try:
                ok, full_s, full_pause, full_sales = await till_while(cache.refresh(api), cache)
                if not ok:
                    raise BenchError("the box did not apply the full book (see the log)")

                r = await hq.post("/api/v1/price-books", json={
                    "changes": True, "currency": "EUR", "items": upserts, "remove": removed})
                if r.status_code != 201:
                    raise BenchError(f"delta publish: {r.status_code} {r.text[:300]}")
                t0 = time.perf_counter()
                delta_header = await hq.get(f"/api/v1/stores/{STORE}/price-book/wire",
                                            params={"base": r.json()["version"] - 1})
                delta_build_s = time.perf_counter() - t0
                ok, delta_s, delta_pause, delta_sales = await till_while(
                    cache.refresh(api), cache)
                if not ok or cache.changed is None or len(cache.changed) != changes:
                    raise BenchError("the box did not apply the delta (see the log)")
            finally:
                await api.aclose()
    return {
        "bench": "pricebook", "skus": skus,
        "wire_bytes": wire_bytes, "raw_json_bytes": raw_json_bytes,
        "baseline_gzip_bytes": len(gz), "baseline_gzip_s": round(gzip_s, 3),
        "publish_s": round(publish_s, 3), "build_s": round(build_s, 3),
        "full_apply_s": round(full_s, 3),
        "delta_changes": changes,
        "delta_wire_bytes": delta_header.json()["header"]["payload"]["body_size"],
        "delta_build_s": round(delta_build_s, 3), "delta_apply_s": round(delta_s, 3),
        "max_till_pause_ms": round(max(full_pause, delta_pause), 1),
        "full_till_pause_ms": round(full_pause, 1),
        "delta_till_pause_ms": round(delta_pause, 1),
        "till_sales_during_apply": full_sales + delta_sales,
        "targets_met": full_s < 10 and delta_s < 1 and max(full_pause, delta_pause) < 50,
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "commit": _commit(),
    }


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="storefleet bench pricebook",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--skus", type=int, default=1_000_000, help="items in the book")
    parser.add_argument("--changes", type=int, default=10_000, help="changes in the delta")
    args = parser.parse_args(argv)
    if args.skus < 1 or not 1 <= args.changes <= args.skus:
        parser.error("--skus must be positive and --changes between 1 and --skus")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="sf-bench-pricebook-") as tmp:
        try:
            r = asyncio.run(measure(Path(tmp), skus=args.skus, changes=args.changes))
        except BenchError as err:
            print(f"bench pricebook: {err}", file=sys.stderr)
            return 2
    print(f"{r['skus']} SKUs: {r['wire_bytes']} bytes on the wire ({r['raw_json_bytes']} raw "
          f"JSON, {r['baseline_gzip_bytes']} gzipped); built in {r['build_s']} s, applied at "
          f"the store in {r['full_apply_s']} s; {r['delta_changes']} changes applied in "
          f"{r['delta_apply_s']} s; longest till pause {r['max_till_pause_ms']} ms")
    if args.json:
        print(json.dumps(r))
    return 0 if r["targets_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
