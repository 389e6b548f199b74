"""Coupon-trigger latency: a cart's scan report arriving at the agent -> the coupon
message arriving on that cart screen's WebSocket, p50/p99, with N carts at 5 Hz.

What runs (one process pinned to one CPU, as on a store box): the real cart driver
(``_on_local``: flood guard, pydantic decode, fan-out), the real trigger service
(beacon locator, rules engine, SQLite coupon ledger with ``synchronous=FULL``, the
``coupon_issued`` event into a real SQLite outbox), the real cart-screen server (uvicorn,
Starlette WebSocket) and one real WebSocket client per cart on loopback, which also takes
every position update (the map dot) the screen gets at 5 Hz. Only the MQTT hop in front
of the agent is left out: the report enters where the local-bus consumer hands it over.

Workload: each cart moves to the next anchor every ``zone_s`` seconds (readings next to
it; two of the seven anchors are in the grocery zone); the grocery rule fires after
600 ms of dwell with a per-cart cool-down of ``cooldown_s`` (10 s: about ``carts / 10``
coupons per second, some 50x what shoppers would see); plus ``rules`` filler rules (other
zones and shelves of a chain-wide snapshot) that never fire here but that an unindexed
engine must look at on every report.

Baseline, measured in the same run with the same load: the engine without its zone/shelf
index (every rule checked on every report).

Spread: one run is ``--rounds`` rounds of the indexed engine (each a fresh agent, server
and clients) and ``--baseline-rounds`` of the baseline; the JSON gives every round and
the median, min and max over rounds. Wall-clock latency is at the mercy of whatever else
the machine runs, so each round also reports CPU per scan report (``process_time`` of the
whole process - agent, screen server, the 300 clients and the generator - and of the
event-loop thread alone) and the garbage collector's pauses, which a busy machine does
not inflate the same way. ``--path-scans``: the CPU per report of the agent's per-scan
path alone (driver, trigger service, screen pushes into the hub; no sockets, no coupons),
three repetitions after the rounds: the figure to compare two versions of the code by.

``--locator model`` locates carts with the demo store's trained model (particle filter
per cart, decision 0009) as the demo does, instead of the strongest-beacon fallback.

    python -m bench.triggers --json               # per-round lines, then one JSON line
    python -m bench.triggers --json --rounds 1 --baseline-rounds 0 --locator model
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from prometheus_client import CollectorRegistry

from edge_agent.cartscreen.backend import CartScreenBackend
from edge_agent.cartscreen.hub import ScreenHub
from edge_agent.cartscreen.server import CartScreenServer
from edge_agent.cartscreen.web import create_app
from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.cart import CartDriver
from edge_agent.drivers.testing import FakeContext
from edge_agent.inference.triggers import (
    BeaconLocator,
    CodeRange,
    CouponLedger,
    Decision,
    StoreMap,
    TriggerEngine,
    TriggerService,
)
from edge_agent.inference.triggers.ledger import IssuedCoupon
from edge_agent.inference.triggers.service import Locator
from edge_agent.inference.triggers.storemap import PositionerLocator
from edge_agent.localbus.consumer import event_row
from edge_agent.metrics import AgentMetrics
from edge_agent.storage import Database
from edge_agent.uplink.outbox import Outbox
from protocols import encode
from protocols.cart import BeaconReading, CartScan, CartSessionMsg
from protocols.clock import ManualClock
from protocols.triggers import TriggerRule, parse_rules

LAYOUT = Path(__file__).resolve().parents[1] / "firmware_sim" / "layouts" / "demo_store.toml"
# The generator wakes at most this often and sends every report that has come due: one
# timer per report (1,500 a second) made the load generator a visible share of the core
# it shares with the agent. 2 ms is short next to the 200 ms between a cart's reports.
GEN_TICK_S = 0.002
LocatorKind = Literal["beacon", "model"]


class OutboxContext(FakeContext):
    """The driver context with ``emit_event`` going into a real SQLite outbox."""

    outbox: Outbox | None = None

    async def emit_event(self, kind: str, *, device_id: str, data: Any,
                         event_id: str | None = None) -> str:
        assert self.outbox is not None and event_id is not None
        await self.outbox.put_many([event_row(self.store_id, event_id=event_id, kind=kind,
                                              device_id=device_id, ts=self.clock.now_ms(),
                                              data=data)])
        return event_id


class TimedService(TriggerService):
    """Knows which scan report (its arrival time) produced each coupon."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque)
        self.t0_by_issue: dict[str, float] = {}
        self.t0_by_code: dict[str, float] = {}

    def observe_scan(self, cart_id: str, **kw: Any) -> list[Decision]:
        queue = self.arrivals[cart_id]
        t0 = queue.popleft() if queue else time.perf_counter()
        decisions = super().observe_scan(cart_id, **kw)
        for d in decisions:
            self.t0_by_issue[d.issue_id] = t0
        return decisions


def rules(store: StoreMap, filler: int, cooldown_s: float) -> tuple[TriggerRule, ...]:
    docs: list[dict[str, Any]] = [
        {"id": "hot-grocery", "zone": "grocery", "dwell_ms": 600,
         "cooldown_ms": int(cooldown_s * 1000), "per_member_per_day": 100,
         "coupon": {"engine_code": "BENCH", "title": "grocery deal"}}]
    for i in range(filler):
        where = {"zone": f"z{i % 400:03d}"} if i % 3 else {"shelf": f"s{i % 700:03d}"}
        docs.append({"id": f"f{i:05d}", **where, "dwell_ms": 1000,
                     "coupon": {"engine_code": "BENCH", "title": "filler"}})
    return parse_rules(docs)


def readings_near(store: StoreMap) -> list[list[BeaconReading]]:
    """Per zone with an anchor: readings of a cart next to that anchor."""
    out = []
    for anchor in store.anchors:
        others = [a for a in store.anchors if a is not anchor][:4]
        out.append([BeaconReading(beacon=anchor.key, rssi=-55)]
                   + [BeaconReading(beacon=a.key, rssi=-80 - 2 * i) for i, a in enumerate(others)])
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def make_locator(kind: LocatorKind, store: StoreMap) -> Locator:
    if kind == "beacon":
        return BeaconLocator(store)
    # imported here: numpy and onnxruntime load only for this variant, as in the agent
    from edge_agent.inference.positioning import Positioner, PositionModel

    model = Path(str(resources.files("models.positioning").joinpath("demo_store.onnx")))
    return PositionerLocator(Positioner(PositionModel(model)), store)


class GcWatch:
    """The collector's pauses while measuring: count, wall and CPU time per generation.
    CPU (``thread_time``) is what the collection cost; wall is what a coupon waited."""

    def __init__(self) -> None:
        self.active = False
        self._start = (0.0, 0.0)
        self.pauses: dict[int, list[tuple[float, float]]] = {0: [], 1: [], 2: []}

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = (time.perf_counter(), time.thread_time())
        elif self.active:
            wall, cpu = self._start
            self.pauses[info["generation"]].append(
                (time.perf_counter() - wall, time.thread_time() - cpu))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for gen, pauses in self.pauses.items():
            out[f"gen{gen}"] = {
                "n": len(pauses),
                "max_wall_ms": round(max((w for w, _ in pauses), default=0.0) * 1000, 2),
                "max_cpu_ms": round(max((c for _, c in pauses), default=0.0) * 1000, 2),
                "total_cpu_ms": round(sum(c for _, c in pauses) * 1000, 1),
            }
        return out


async def phase(*, indexed: bool, carts: int, hz: float, seconds: float, warmup: float,
                filler: int, zone_s: float, cooldown_s: float, workdir: Path,
                locator: LocatorKind = "beacon") -> dict[str, Any]:
    from websockets.asyncio.client import connect

    store = StoreMap.load(LAYOUT)
    ctx = OutboxContext()
    registry = ctx.registry
    db = Database(workdir / "outbox.db", synchronous="FULL")
    await db.open()
    outbox = Outbox(db, clock=ctx.clock, metrics=AgentMetrics(CollectorRegistry()),
                    max_bytes=1 << 30, max_age_s=86_400)
    await outbox.load()
    ctx.outbox = outbox
    driver = CartDriver(DeviceConfig("carts", "cart", options={"max_carts": carts + 10}), ctx)
    driver_task = asyncio.create_task(driver.run(), name="bench-carts")
    await asyncio.sleep(0)
    hub = ScreenHub(clock=ctx.clock, registry=registry)
    ledger = CouponLedger(workdir / "triggers.db")
    engine = TriggerEngine(rules(store, filler, cooldown_s), indexed=indexed)
    backend = CartScreenBackend(ctx=ctx, store_id="S001", hub=hub, pricing=lambda: None,
                                ledger=ledger, carts=lambda: driver, store_map=store)
    service: TimedService

    def on_coupon(cart_id: str, coupon: IssuedCoupon, rule: TriggerRule) -> None:
        service.t0_by_code[coupon.code] = service.t0_by_issue.pop(coupon.issue_id)
        backend.on_coupon(cart_id, coupon, rule)

    service = TimedService(ctx, ledger=ledger, engine=engine, locator=make_locator(locator, store),
                           carts=lambda: driver, on_coupon=on_coupon,
                           on_location=backend.on_location)
    await service.start()
    await ledger.add_range(CodeRange(start=0, end=999_999, prefix="RBENCH-", engine_code="BENCH",
                                     expires_ms=4_102_444_800_000))
    server = CartScreenServer(create_app(backend, registry=registry), host="127.0.0.1", port=0)
    await server.start()
    service_task = asyncio.create_task(service.run(), name="bench-triggers")

    latencies: list[float] = []
    measuring = False
    received = 0

    async def client(cart_id: str, ready: asyncio.Event) -> None:
        nonlocal received
        async with connect(f"ws://127.0.0.1:{server.port}/ws/cart/{cart_id}",
                           max_queue=None) as ws:
            ready.set()
            async for raw in ws:
                received += 1
                # only coupons are parsed: the clients share the core with the agent, and
                # the 5 Hz position and basket pushes are not what is measured
                if not measuring or '"type":"coupon"' not in raw:
                    continue
                msg = json.loads(raw)
                if msg["type"] == "coupon":
                    t0 = service.t0_by_code.pop(msg["data"]["code"], None)
                    if t0 is not None:
                        latencies.append(time.perf_counter() - t0)

    ids = [f"cart-{i:03d}" for i in range(carts)]
    clients = []
    for cart_id in ids:
        ready = asyncio.Event()
        task = asyncio.create_task(client(cart_id, ready), name=f"bench-ws-{cart_id}")
        clients.append(task)
        waiter = asyncio.create_task(ready.wait(), name="bench-ws-ready")
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # a client that could not connect: surface why
    for cart_id in ids:
        await ctx.deliver_local("cart", cart_id, "session", encode(CartSessionMsg(
            session_id=f"s-{cart_id}", action="start", ts=ctx.clock.now_ms())))

    near = readings_near(store)
    # encoded up front: the load generator shares the core and should cost little
    payloads = [[encode(CartScan(ts=ctx.clock.now_ms(), session_id=f"s-{cart_id}",
                                 readings=zone)) for zone in near] for cart_id in ids]
    period = 1.0 / hz
    per_zone = max(1, round(zone_s * hz))
    watch = GcWatch()
    gc.callbacks.append(watch)
    start = time.perf_counter()
    sent = 0
    sent_at_start = 0
    lag = []
    tick = 0
    cpu0 = thread0 = wall0 = 0.0
    # carts are spread evenly over the period, like real tablets that started at random
    while (now := time.perf_counter()) - start < warmup + seconds:
        if not measuring and now - start >= warmup:
            measuring = watch.active = True
            sent_at_start = sent
            cpu0, thread0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
        due = start + (tick // len(ids)) * period + (tick % len(ids)) * period / len(ids)
        if due > now:
            await asyncio.sleep(max(due - now, GEN_TICK_S))
            now = time.perf_counter()
        # every report that has come due, in order (a real bus hands over bursts too)
        while due <= now:
            slot = tick % len(ids)
            lag.append(now - due)
            cart_id = ids[slot]
            step = tick // len(ids) + slot  # carts are out of phase with each other
            payload = payloads[slot][(step // per_zone + slot) % len(near)]
            service.arrivals[cart_id].append(time.perf_counter())
            await ctx.deliver_local("cart", cart_id, "scan", payload)
            sent += 1
            tick += 1
            due = start + (tick // len(ids)) * period + (tick % len(ids)) * period / len(ids)
    cpu = time.process_time() - cpu0
    thread_cpu = time.thread_time() - thread0
    elapsed = time.perf_counter() - wall0
    watch.active = False
    gc.callbacks.remove(watch)
    await asyncio.sleep(0.5)  # let the last coupons arrive
    for task in (service_task, driver_task):
        task.cancel()
    await asyncio.gather(service_task, driver_task, return_exceptions=True)
    await server.stop()  # closes every screen's socket from the server side
    for task in clients:
        task.cancel()
    await asyncio.wait(clients, timeout=5)
    await asyncio.wait_for(service.aclose(), 10)
    await db.close()
    dropped = registry.get_sample_value("storefleet_cart_rejected_total",
                                        {"reason": "rate_limited"}) or 0
    ms = [x * 1000 for x in latencies]
    scans = sent - sent_at_start
    return {
        "indexed": indexed,
        "locator": locator,
        "scans_per_s": round(scans / elapsed, 1),
        "coupons": len(ms),
        "coupons_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": round(pct(ms, 0.50), 2),
        "p99_ms": round(pct(ms, 0.99), 2),
        "max_ms": round(max(ms), 2) if ms else None,
        "cpu_share": round(cpu / elapsed, 3),
        # CPU per scan report: the whole process, and the event-loop thread alone
        # (without the SQLite threads); both include the clients and the generator
        "cpu_us_per_scan": round(cpu / scans * 1e6, 1) if scans else None,
        "loop_cpu_us_per_scan": round(thread_cpu / scans * 1e6, 1) if scans else None,
        "gc": watch.summary(),
        "generator_lag_p99_ms": round(pct([x * 1000 for x in lag[sent_at_start:]], 0.99), 2),
        "rate_limited": int(dropped),
        "ws_messages": received,
    }


async def scan_path(*, carts: int, scans: int, filler: int, zone_s: float, hz: float,
                    workdir: Path, locator: LocatorKind = "beacon") -> dict[str, Any]:
    """CPU of the agent's per-scan path alone, no sockets: the cart driver's intake, the
    trigger service's loop (locate, the engine, the screen's dot and basket pushes into
    the hub's queues). The hot rule never fires here (coupons are ~1 % of reports and
    measured by ``phase``), so this is the cost every report pays. ``thread_time`` of
    the one thread it runs on: what a busy machine inflates least."""
    store = StoreMap.load(LAYOUT)
    clock = ManualClock()
    ctx = FakeContext(clock=clock)
    driver = CartDriver(DeviceConfig("carts", "cart", options={"max_carts": carts + 10}), ctx)
    driver_task = asyncio.create_task(driver.run(), name="bench-carts")
    await asyncio.sleep(0)
    hub = ScreenHub(clock=ctx.clock, registry=ctx.registry)
    ledger = CouponLedger(workdir / "triggers.db")
    engine = TriggerEngine(rules(store, filler, cooldown_s=0)[1:])  # filler only: none fire
    backend = CartScreenBackend(ctx=ctx, store_id="S001", hub=hub, pricing=lambda: None,
                                ledger=ledger, carts=lambda: driver, store_map=store)
    service = TriggerService(ctx, ledger=ledger, engine=engine,
                             locator=make_locator(locator, store), carts=lambda: driver,
                             on_location=backend.on_location)
    await service.start()
    service_task = asyncio.create_task(service.run(), name="bench-triggers")
    ids = [f"cart-{i:03d}" for i in range(carts)]
    screens = []
    for cart_id in ids:
        sub = hub.subscribe(cart_id)
        screens.append((sub, sub.__enter__()))
        await ctx.deliver_local("cart", cart_id, "session", encode(CartSessionMsg(
            session_id=f"s-{cart_id}", action="start", ts=ctx.clock.now_ms())))
    near = readings_near(store)
    payloads = [[encode(CartScan(ts=0, session_id=f"s-{cart_id}", readings=zone))
                 for zone in near] for cart_id in ids]
    per_zone = max(1, round(zone_s * hz))
    await asyncio.sleep(0.05)
    cpu0 = time.thread_time()
    for tick in range(scans):
        slot = tick % carts
        step = tick // carts + slot
        if slot == 0:
            # the agent's clock moves 1/hz per round of carts, so each cart's filter,
            # the map dot's 1 s throttle and the dwell times see the real rate
            clock.advance(1.0 / hz)
        await ctx.deliver_local("cart", ids[slot], "scan",
                                payloads[slot][(step // per_zone + slot) % len(near)])
        await asyncio.sleep(0)  # the service takes it, as between two bus messages
        if slot == carts - 1:
            for _, queue in screens:  # the screens read what was pushed
                while not queue.empty():
                    queue.get_nowait()
    cpu = time.thread_time() - cpu0
    judged = ctx.registry.get_sample_value("storefleet_trigger_observations_total",
                                           {"kind": "position"}) or 0
    for task in (service_task, driver_task):
        task.cancel()
    await asyncio.gather(service_task, driver_task, return_exceptions=True)
    for cm, _ in screens:
        cm.__exit__(None, None, None)
    await service.aclose()
    return {"scans": scans, "judged": int(judged), "locator": locator,
            "cpu_us_per_scan": round(cpu / scans * 1e6, 2)}


SPREAD_KEYS = ("p50_ms", "p99_ms", "max_ms", "scans_per_s", "cpu_share", "cpu_us_per_scan",
               "loop_cpu_us_per_scan", "generator_lag_p99_ms")


def spread(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Every round, and the median / min / max over rounds of each figure."""
    out: dict[str, Any] = {"rounds": rounds}
    for key in SPREAD_KEYS:
        values = [r[key] for r in rounds if r.get(key) is not None]
        if values:
            out[key] = {"median": round(statistics.median(values), 3),
                        "min": min(values), "max": max(values)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.triggers", description=__doc__.split(
        "\n")[0])
    ap.add_argument("--carts", type=int, default=300)
    ap.add_argument("--hz", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=10.0, help="measured time per round")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the indexed engine")
    ap.add_argument("--baseline-rounds", type=int, default=1,
                    help="rounds of the unindexed baseline (0: none)")
    ap.add_argument("--rules", type=int, default=3000, help="filler rules besides the hot ones")
    ap.add_argument("--zone-s", type=float, default=1.2, help="time in each zone")
    ap.add_argument("--cooldown-s", type=float, default=10.0,
                    help="per-cart cool-down of the hot rule: sets the coupon rate")
    ap.add_argument("--locator", choices=("beacon", "model"), default="beacon",
                    help="strongest beacon (fallback) or the demo store's trained model")
    ap.add_argument("--path-scans", type=int, default=30_000,
                    help="scan reports through the agent's path alone, no sockets, for its "
                         "CPU per report (3 repetitions; 0: skip)")
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the last)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.baseline_rounds < 0:
        ap.error("--rounds must be at least 1 and --baseline-rounds at least 0")
    pinned = hasattr(os, "sched_setaffinity")
    if pinned:
        cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {args.cpu if args.cpu is not None else max(cpus)})
    try:
        summary = run(args)
    finally:
        if pinned:
            os.sched_setaffinity(0, cpus)  # a caller in the same process (a test) gets them back
    if args.json:
        print(json.dumps(summary))
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = sys.stderr if args.json else sys.stdout
    results: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for indexed, n in ((True, args.rounds), (False, args.baseline_rounds)):
        for i in range(n):
            with tempfile.TemporaryDirectory(prefix="bench-triggers-") as tmp:
                r = asyncio.run(phase(
                    indexed=indexed, carts=args.carts, hz=args.hz, seconds=args.seconds,
                    warmup=args.warmup, filler=args.rules, zone_s=args.zone_s,
                    cooldown_s=args.cooldown_s, workdir=Path(tmp), locator=args.locator))
            results[indexed].append(r)
            name = "indexed " if indexed else "baseline"
            print(f"{name} round {i + 1}/{n}: {r['scans_per_s']} scans/s, {r['coupons']} "
                  f"coupons, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, cpu "
                  f"{r['cpu_share']:.0%}, {r['cpu_us_per_scan']} us/scan, gen2 GC "
                  f"{r['gc']['gen2']['n']} (max {r['gc']['gen2']['max_cpu_ms']} ms cpu)",
                  file=out)
    path = []
    for _ in range(3 if args.path_scans > 0 else 0):
        with tempfile.TemporaryDirectory(prefix="bench-triggers-") as tmp:
            path.append(asyncio.run(scan_path(
                carts=args.carts, scans=args.path_scans, filler=args.rules, zone_s=args.zone_s,
                hz=args.hz, workdir=Path(tmp), locator=args.locator)))
    if path:
        print(f"scan path alone: {[p['cpu_us_per_scan'] for p in path]} us CPU per report",
              file=out)
    summary: dict[str, Any] = {
        "bench": "triggers", "carts": args.carts, "hz": args.hz, "rules": args.rules + 1,
        "seconds": args.seconds, "cooldown_s": args.cooldown_s, "locator": args.locator,
        "python": platform.python_version(), "cpus_pinned": 1,
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "indexed": spread(results[True]),
        "baseline_unindexed": spread(results[False]) if results[False] else None,
        "scan_path": {"scans": args.path_scans, "cpu_us_per_scan": [
            p["cpu_us_per_scan"] for p in path],
            "min_cpu_us_per_scan": min(p["cpu_us_per_scan"] for p in path)} if path else None}
    for key, label in (("indexed", "indexed "), ("baseline_unindexed", "baseline")):
        s = summary[key]
        if s is not None and "p99_ms" in s:
            print(f"{label} over {len(s['rounds'])} rounds: p50 median {s['p50_ms']['median']} "
                  f"ms, p99 median {s['p99_ms']['median']} ms (min {s['p99_ms']['min']}, max "
                  f"{s['p99_ms']['max']}), {s['cpu_us_per_scan']['median']} us CPU per scan",
                  file=out)
    return summary


if __name__ == "__main__":
    sys.exit(main())
