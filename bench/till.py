"""Lane till benchmark: sales per second through the box's HTTP till with concurrent lanes.

Each lane is a terminal selling, back to back, sales of ``--items`` items for a member
(by id) paid in cash. ``--flow sale`` (the default): each sale is one ``POST
/till/v1/sales`` (a lane terminal that rings the basket up itself); ``--flow basket``:
open a basket, scan each item, attach the member, set the tender, complete (the cashier
screen's way, ``--items`` + 4 requests). Either way each sale is priced by the compiled
engine and written to the till's ledger and then to the agent's durable SQLite outbox
(``synchronous=FULL``) before its answer, and printed (no printer here, so the receipt
is built and not sent). The till serves in
a child process of its own (``--serve``), as on the store box, with uvicorn in one event
loop; the lanes are this process, over HTTP/1.1 keep-alive connections (a small client
on asyncio streams, so the clients' CPU is not httpx's).

Figures: ``sales_per_s`` (completed sales over the wall time of the run), ``p95_ms`` and
``p99_ms`` of every request, ``sale_p95_ms`` / ``sale_p99_ms`` (open to complete),
``complete_p95_ms``, the till process's CPU seconds per sale, and the load average (the
machine is shared). Every completed sale must be in the outbox after the run
(``outbox_sales``). Baseline, same run: the same sales through the same ``LaneTills``
in-process, without HTTP (``baseline_sales_per_s``).

    python -m bench.till --lanes 8 --json          # storefleet bench till --lanes 8 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from cloud.db.models_loyalty import PromotionPublication
from cloud.promotions.service import store_document
from cloud.promotions.signing import SnapshotSigner
from edge_agent.drivers.capabilities import ReceiptPrinter
from edge_agent.localbus.consumer import event_row
from edge_agent.metrics import AgentMetrics
from edge_agent.pos.runtime import PosRuntime
from edge_agent.storage import Database
from edge_agent.till.members import MemberRef
from edge_agent.till.runtime import LaneService
from edge_agent.till.service import LaneTills, SaleIn, TenderIn
from edge_agent.till.settings import LaneSettings, TillModuleSettings
from edge_agent.uplink.outbox import Outbox
from pricing import Catalog, Item
from protocols import topics
from protocols.clock import Clock, SystemClock

REPO = Path(__file__).resolve().parents[1]
STORE = "S001"
SKUS = 500
CATEGORIES = ("dairy", "bakery", "drinks", "produce", "frozen", "household", "snacks")
PROMOS: list[dict[str, Any]] = [
    {"kind": "markdown", "id": "dairy-10", "name": "Dairy 10% off", "percent_bp": 1_000,
     "scope": {"categories": ["dairy"]}},
    {"kind": "threshold", "id": "spend-20", "name": "5 off 20", "min_spend": 2_000,
     "amount_off": 500},
    {"kind": "coupon", "id": "welcome", "name": "Welcome", "code": "CMP-welcome",
     "amount_off": 50},
    {"kind": "points_earn", "id": "earn", "points": 1, "per_minor": 100},
]


def catalog() -> Catalog:
    return Catalog.of([Item(sku=f"sku-{i:05d}", name=f"Article {i}",
                            category=CATEGORIES[i % len(CATEGORIES)],
                            price=49 + (i * 7919) % 1_500) for i in range(SKUS)],
                      version=1, currency="EUR")


def publication(version: int = 1) -> PromotionPublication:
    from pydantic import TypeAdapter

    from pricing import Promotion

    adapter: TypeAdapter[Promotion] = TypeAdapter(Promotion)
    return PromotionPublication(
        version=version, currency="EUR", published_ms=1_767_225_600_000,
        entries=[{"promotion": adapter.dump_python(adapter.validate_python(p), mode="json"),
                  "stores": None, "channels": ["pos", "cart", "online"]} for p in PROMOS])


def lanes_of(n: int) -> list[dict[str, str]]:
    """``n`` lanes with fresh random tokens (``[[till.lanes.lane]]`` entries)."""
    return [{"id": f"lane-{i + 1}", "token": secrets.token_urlsafe(32)} for i in range(n)]


class OutboxSink:
    """``emit_event`` into a real SQLite outbox (the agent's ``Outbox`` on its
    ``Database``), as ``AgentDriverContext`` does."""

    def __init__(self, path: Path, *, store_id: str, clock: Clock) -> None:
        self.store_id = store_id
        self.clock = clock
        self._db = Database(path, synchronous="FULL")
        self.outbox = Outbox(self._db, clock=clock, metrics=AgentMetrics(CollectorRegistry()),
                             max_bytes=1 << 30, max_age_s=86_400)

    async def open(self) -> None:
        await self._db.open()
        await self.outbox.load()

    async def close(self) -> None:
        await self._db.close()

    async def emit_event(self, kind: str, *, device_id: str, data: Mapping[str, Any],
                         event_id: str | None = None) -> str:
        assert event_id is not None  # the till names every event
        await self.outbox.put_many([event_row(self.store_id, event_id=event_id, kind=kind,
                                              device_id=device_id, ts=self.clock.now_ms(),
                                              data=data)])
        return event_id


def outbox_sale_ids(path: Path, store_id: str = STORE) -> set[str]:
    """The ids of the ``sale`` events in an outbox file (read after its writer stopped)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT id FROM rows WHERE topic = ?",
                            (topics.evt(store_id, "sale"),)).fetchall()
    return {r[0] for r in rows}


@dataclass
class LaneStore:
    service: LaneService
    pos: PosRuntime
    sink: OutboxSink
    online: list[bool] = field(default_factory=lambda: [True])

    @property
    def lanes(self) -> LaneTills:
        return self.service.lanes


@contextlib.asynccontextmanager
async def lane_store(workdir: Path, lanes: list[dict[str, Any]], *, serve: bool = True,
                     port: int = 0, registry: CollectorRegistry | None = None,
                     printers: Callable[[str], ReceiptPrinter | None] = lambda _: None,
                     clock: Clock | None = None, till: dict[str, Any] | None = None,
                     transport: httpx.AsyncBaseTransport | None = None
                     ) -> AsyncIterator[LaneStore]:
    """A store box's till with its lanes: the signed promotion snapshot and the catalog
    installed, a real SQLite ledger and outbox under ``workdir``; with ``serve`` the
    lanes' HTTP server listens on 127.0.0.1:``port``. ``till``: more ``[till]``
    settings (``cloud_api``, ...); ``transport``: how the till reaches that cloud."""
    clock = clock or SystemClock()
    signer = SnapshotSigner.generate()
    settings = TillModuleSettings.model_validate({
        "trusted_keys": [signer.public_keys()[0]["public_key"]], **(till or {}),
        "lanes": {"host": "127.0.0.1", "port": port, "lane": lanes}})
    assert settings.lanes is not None
    registry = registry or CollectorRegistry()
    sink = OutboxSink(workdir / "outbox.db", store_id=STORE, clock=clock)
    await sink.open()
    online = [True]
    pos = PosRuntime(settings, store_id=STORE, data_dir=workdir, clock=clock,
                     registry=registry, sink=sink, online=lambda: online[0],
                     transport=transport)
    await pos.open()
    service = LaneService(settings.lanes, pos=pos, sink=sink, clock=clock,
                          online=lambda: online[0], printers=printers, registry=registry)
    try:
        if not await pos.promotions.install(store_document(publication(), STORE, signer)):
            raise RuntimeError("the bench's promotion snapshot was refused")
        await pos.catalog.install(catalog())
        if serve:
            await service.start()
        yield LaneStore(service, pos, sink, online)
    finally:
        await service.stop()
        await pos.close()
        await sink.close()


# ---- the lanes' client ----------------------------------------------------------------------


class Http:
    """One keep-alive HTTP/1.1 connection, JSON in and out (the bench's lane terminal)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self._host, self._port = host, port
        self._auth = f"Authorization: Bearer {token}\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Http:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self._reader is not None and self._writer is not None
        data = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self._host}\r\n{self._auth}"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
        self._writer.write(head.encode() + data)
        status_line = await self._reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        raw = await self._reader.readexactly(length) if length else b""
        return status, json.loads(raw) if raw else None


@dataclass
class Timings:
    requests: list[float] = field(default_factory=list)
    sales: list[float] = field(default_factory=list)
    completes: list[float] = field(default_factory=list)
    sale_ids: list[str] = field(default_factory=list)
    failures: int = 0


def basket_plan(rng: random.Random, items: int) -> list[str]:
    return [f"sku-{rng.randrange(SKUS):05d}" for _ in range(items)]


def sale_body(rng: random.Random, items: int, *, seed: int, n: int) -> dict[str, Any]:
    """One sale for ``POST /till/v1/sales``: the lines, the member, cash."""
    return {"lines": [{"code": code} for code in basket_plan(rng, items)],
            "member": {"member_id": f"M{seed:03d}{n % 50:03d}"},
            "tender": {"method": "cash"}, "cashier": "bench"}


async def http_lane(host: str, port: int, token: str, *, sales: int, items: int,
                    seed: int, out: Timings, flow: str = "sale") -> None:
    rng = random.Random(seed)
    async with Http(host, port, token) as http:

        async def call(method: str, path: str, body: Any = None,
                       expect: int = 200) -> Any:
            t0 = time.perf_counter()
            status, doc = await http.call(method, path, body)
            out.requests.append(time.perf_counter() - t0)
            if status != expect:
                out.failures += 1
                raise RuntimeError(f"{method} {path}: {status} {doc}")
            return doc

        for n in range(sales):
            t0 = time.perf_counter()
            if flow == "sale":  # the terminal rang the basket up: one request
                sale = await call("POST", "/till/v1/sales",
                                  sale_body(rng, items, seed=seed, n=n))
                now = time.perf_counter()
                out.completes.append(now - t0)
                out.sales.append(now - t0)
                out.sale_ids.append(sale["sale_id"])
                continue
            basket = await call("POST", "/till/v1/baskets", expect=201)
            base = f"/till/v1/baskets/{basket['basket_id']}"
            for code in basket_plan(rng, items):
                doc = await call("POST", f"{base}/items", {"code": code})
            await call("PUT", f"{base}/member", {"member_id": f"M{seed:03d}{n % 50:03d}"})
            doc = await call("PUT", f"{base}/tender",
                             {"method": "cash", "cash_given": doc["to_pay"] + 1_000})
            t1 = time.perf_counter()
            sale = await call("POST", f"{base}/complete", {"cashier": "bench"})
            now = time.perf_counter()
            out.completes.append(now - t1)
            out.sales.append(now - t0)
            out.sale_ids.append(sale["sale_id"])


async def direct_lane(lanes: LaneTills, lane: LaneSettings, *, sales: int, items: int,
                      seed: int, out: Timings, flow: str = "sale") -> None:
    """The same sales through ``LaneTills`` itself: no HTTP, no JSON."""
    rng = random.Random(seed)
    for n in range(sales):
        t0 = time.perf_counter()
        if flow == "sale":
            sale = await lanes.sell(lane, SaleIn.model_validate(
                sale_body(rng, items, seed=seed, n=n)))
            now = time.perf_counter()
            out.completes.append(now - t0)
            out.sales.append(now - t0)
            out.sale_ids.append(sale["sale_id"])
            continue
        basket = await lanes.open(lane)
        bid = basket["basket_id"]
        for code in basket_plan(rng, items):
            doc = await lanes.scan(lane, bid, code)
        await lanes.set_member(lane, bid, MemberRef(member_id=f"M{seed:03d}{n % 50:03d}"))
        await lanes.set_tender(lane, bid, TenderIn(method="cash",
                                                   cash_given=doc["to_pay"] + 1_000))
        t1 = time.perf_counter()
        sale = await lanes.complete(lane, bid, cashier="bench")
        now = time.perf_counter()
        out.completes.append(now - t1)
        out.sales.append(now - t0)
        out.sale_ids.append(sale["sale_id"])


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile in ms (nearest rank)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the till process -------------------------------------------------------------------------


async def serve(workdir: Path, lanes: list[dict[str, str]]) -> None:
    """The till for the bench's child process: prints ``{"port": N}``, serves until its
    stdin closes."""
    async with lane_store(workdir, lanes) as store:
        assert store.service.server is not None
        print(json.dumps({"port": store.service.server.port}), flush=True)
        await asyncio.to_thread(sys.stdin.read)  # blocks a worker thread, not the loop


async def http_phase(workdir: Path, spec: list[dict[str, str]], *, sales: int, items: int,
                     warmup: int, flow: str) -> dict[str, Any]:
    lanes_file = workdir / "lanes.json"  # written by ``run``
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.till", "--serve", str(workdir), str(lanes_file),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        cwd=REPO)
    assert child.stdout is not None and child.stdin is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), timeout=60)
        port = int(json.loads(line)["port"])
        # Warm-up: imports, the engine's first compile, the connections.
        warm = Timings()
        await asyncio.gather(*(http_lane("127.0.0.1", port, lane["token"], sales=warmup,
                                         items=items, seed=1000 + i, out=warm, flow=flow)
                               for i, lane in enumerate(spec)))
        out = Timings()
        cpu0, t0 = cpu_s(child.pid), time.perf_counter()
        await asyncio.gather(*(http_lane("127.0.0.1", port, lane["token"], sales=sales,
                                         items=items, seed=i, out=out, flow=flow)
                               for i, lane in enumerate(spec)))
        wall = time.perf_counter() - t0
        till_cpu = cpu_s(child.pid) - cpu0
    finally:
        child.stdin.close()
        await asyncio.wait_for(child.wait(), timeout=60)
    stored = outbox_sale_ids(workdir / "outbox.db")
    completed = set(out.sale_ids) | set(warm.sale_ids)
    return {"sales": len(out.sale_ids), "wall_s": round(wall, 3),
            "sales_per_s": round(len(out.sale_ids) / wall, 1),
            "requests_per_s": round(len(out.requests) / wall, 1),
            "p50_ms": pct(out.requests, 0.50), "p95_ms": pct(out.requests, 0.95),
            "p99_ms": pct(out.requests, 0.99), "sale_p50_ms": pct(out.sales, 0.50),
            "sale_p95_ms": pct(out.sales, 0.95), "sale_p99_ms": pct(out.sales, 0.99),
            "complete_p95_ms": pct(out.completes, 0.95),
            "till_cpu_ms_per_sale": round(till_cpu / max(1, len(out.sale_ids)) * 1000, 2),
            "till_cpu_share": round(till_cpu / wall, 2), "failures": out.failures,
            "outbox_sales": len(stored & completed), "completed": len(completed)}


async def direct_phase(workdir: Path, *, lanes: int, sales: int, items: int,
                       warmup: int, flow: str) -> dict[str, Any]:
    async with lane_store(workdir, lanes_of(lanes), serve=False) as store:
        till = store.lanes
        spec = till.settings.lane
        await asyncio.gather(*(direct_lane(till, lane, sales=warmup, items=items,
                                           seed=1000 + i, out=Timings(), flow=flow)
                               for i, lane in enumerate(spec)))
        out = Timings()
        t0 = time.perf_counter()
        await asyncio.gather(*(direct_lane(till, lane, sales=sales, items=items, seed=i,
                                           out=out, flow=flow)
                               for i, lane in enumerate(spec)))
        wall = time.perf_counter() - t0
    return {"sales_per_s": round(len(out.sale_ids) / wall, 1),
            "sale_p95_ms": pct(out.sales, 0.95), "sale_p99_ms": pct(out.sales, 0.99),
            "complete_p95_ms": pct(out.completes, 0.95)}


def run(*, lanes: int, sales: int, items: int, warmup: int,
        flow: str = "sale") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-till-") as tmp:
        load0 = os.getloadavg()[0]
        (Path(tmp) / "http").mkdir()
        (Path(tmp) / "direct").mkdir()
        spec = lanes_of(lanes)
        (Path(tmp) / "http" / "lanes.json").write_text(json.dumps(spec))
        http = asyncio.run(http_phase(Path(tmp) / "http", spec, sales=sales, items=items,
                                      warmup=warmup, flow=flow))
        base = asyncio.run(direct_phase(Path(tmp) / "direct", lanes=lanes, sales=sales,
                                        items=items, warmup=warmup, flow=flow))
        load1 = os.getloadavg()[0]
    return {"bench": "till", "lanes": lanes, "sales_per_lane": sales, "items": items,
            "flow": flow, "requests_per_sale": 1 if flow == "sale" else items + 4, **http,
            "baseline_sales_per_s": base["sales_per_s"],
            "baseline_sale_p95_ms": base["sale_p95_ms"],
            "baseline_sale_p99_ms": base["sale_p99_ms"],
            "baseline_complete_p95_ms": base["complete_p95_ms"],
            "ratio_to_baseline": round(http["sales_per_s"] / max(base["sales_per_s"], 1e-9), 3),
            "goal_sales_per_s": 200, "goal_p95_ms": 300,
            "load_avg": [round(load0, 2), round(load1, 2)], "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="storefleet bench till",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--lanes", type=int, default=8, help="concurrent lane terminals")
    parser.add_argument("--sales", type=int, default=100, help="sales per lane, measured")
    parser.add_argument("--items", type=int, default=5, help="items scanned per sale")
    parser.add_argument("--warmup", type=int, default=5, help="sales per lane before")
    parser.add_argument("--flow", choices=("sale", "basket"), default="sale",
                        help="sale: each sale one POST /till/v1/sales (a terminal that "
                             "rings the basket up itself); basket: open, scan each item, "
                             "member, tender, complete (the cashier screen's way)")
    parser.add_argument("--serve", nargs=2, metavar=("WORKDIR", "LANES_JSON"),
                        help=argparse.SUPPRESS)  # the till's child process
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(Path(args.serve[0]), json.loads(Path(args.serve[1]).read_text())))
        return 0
    if args.lanes < 1 or args.sales < 1 or args.items < 1 or args.warmup < 0:
        parser.error("--lanes, --sales and --items are at least 1")
    r = run(lanes=args.lanes, sales=args.sales, items=args.items, warmup=args.warmup,
            flow=args.flow)
    ok = r["failures"] == 0 and r["outbox_sales"] == r["completed"]
    print(f"lane till: {r['sales_per_s']:,.1f} sales/s with {r['lanes']} lanes "
          f"({r['flow']} flow: {r['items']} items, {r['requests_per_sale']} request(s) a sale; "
          f"{r['requests_per_s']:,.0f} requests/s); requests p95 {r['p95_ms']} ms, "
          f"p99 {r['p99_ms']} ms; sale p95 {r['sale_p95_ms']} ms; till CPU "
          f"{r['till_cpu_ms_per_sale']} ms a sale; {r['outbox_sales']} of {r['completed']} "
          f"sales in the outbox; in-process without HTTP {r['baseline_sales_per_s']:,.1f} "
          f"sales/s (x{r['ratio_to_baseline']}); load average {r['load_avg']}")
    if args.json:
        print(json.dumps(r, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
