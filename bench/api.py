"""The cloud's hot reads under concurrent clients: requests per second, p50 and p99 per
endpoint on a chain-sized PostgreSQL database, against ``/healthz`` under the same
clients (issue 16, decision 0060).

A fresh database is migrated (alembic, as the cloud does at start) and seeded in the
production schema: ``--stores`` stores in ten regions (bulk inserts), ``--devices``
devices spread over them, ``--members`` members (uuid7 ids, as enrolment makes them),
points credited to the members the bench reads (``cloud.loyalty.points.credit``) and
``--promotions`` promotions from ``bench.pricing``'s generator, upserted and published
through ``cloud.promotions.service`` (one in ten scoped to a region). The cloud then
runs as its own process, ``storefleet cloud serve`` (uvicorn, one per ``--replicas``,
the clients spread over them), and ``--clients`` httpx async clients, each its own
keep-alive connection with an hq-admin token, call one endpoint as fast as it answers
for ``--seconds`` after a warm-up of ``WARMUP_S``:

* ``healthz``: ``GET /healthz`` (a ``SELECT 1`` off the loop): the framework floor,
  ``baseline_rps``;
* ``stores`` / ``stores_cursor``: the first page of ``GET /api/v1/stores`` and pages
  further on (cursors collected by walking the listing once; ``--limit`` rows a page);
* ``store_devices``: ``GET /api/v1/stores/{id}/devices``, stores in turn;
* ``devices`` / ``devices_cursor``: ``GET /api/v1/devices``, first page and deeper pages;
* ``member``: ``GET /api/v1/members/{id}`` (tier and both balances), the body checked:
  the member asked for, with the points seeded;
* ``snapshot``: ``GET /api/v1/stores/{id}/promotions/snapshot``, the signed promotion
  document a store's till fetches.

Any answer but a 200 (or a member body that is not the seeded member) is an error,
counted per endpoint and logged. Before the load the listings are walked to their ends
once and must return every seeded row once (``checked``). ``ratio`` is an endpoint's
rate over the baseline's; ``server_cpu_ms`` and ``db_cpu_ms`` are the CPU the cloud's
processes and PostgreSQL's spent per request (``/proc``): steadier than rates on a
shared box.

    python -m bench.api --json                                  # 5,000 stores, ...
    storefleet bench api --json --stores 20 --devices 200 --members 100 --seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._services import (
    ADMIN_TOKEN,
    BenchError,
    Postgres,
    find_pg_bin,
    free_port,
    wait_port,
)

logger = logging.getLogger(__name__)

WARMUP_S = 1.0  # per endpoint, not measured: pools filled, caches warm
REGIONS = 10  # stores are spread over this many regions; one promotion in ten is regional
DEVICE_KINDS = ("shelf_label", "fridge", "cart", "camera", "vending")
MEMBERS_READ = 1_000  # distinct members the member endpoint cycles over (points credited)
CHUNK = 10_000  # rows per bulk INSERT
CURSOR_PAGES = 20  # deeper pages the cursor endpoints cycle over (at most)
ENDPOINTS = ("healthz", "stores", "stores_cursor", "store_devices", "devices",
             "devices_cursor", "member", "snapshot")


@dataclass(frozen=True)
class Seeded:
    stores: list[str]
    members: dict[str, int]  # member id -> points credited, the ones the bench reads
    devices: int
    members_total: int
    promotions: int


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.api", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="end with a one-line JSON result")
    parser.add_argument("--db", choices=["postgres"], default="postgres")
    parser.add_argument("--stores", type=int, default=5_000)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--promotions", type=int, default=500)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per endpoint")
    parser.add_argument("--limit", type=int, default=500, help="rows per listing page")
    parser.add_argument("--replicas", type=int, default=1, help="cloud API processes")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS),
                        help="comma-separated; healthz (the baseline) always runs")
    args = parser.parse_args(argv)
    endpoints = ["healthz", *(e for e in args.endpoints.split(",") if e and e != "healthz")]
    if unknown := set(endpoints) - set(ENDPOINTS):
        parser.error(f"--endpoints: unknown {sorted(unknown)}; known: {', '.join(ENDPOINTS)}")
    if min(args.stores, args.devices, args.members, args.promotions, args.clients,
           args.limit, args.replicas) < 1 or args.seconds <= 0 or args.limit > 5_000:
        parser.error("counts must be positive, --limit at most 5000")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run(stores=args.stores, devices=args.devices, members=args.members,
                     promotions=args.promotions, clients=args.clients, seconds=args.seconds,
                     limit=args.limit, replicas=args.replicas, endpoints=endpoints)
    except BenchError as err:
        print(f"bench api: {err}", file=sys.stderr)
        return 1
    _report(result, as_json=args.json)
    return 0 if result["ok"] else 1


def run(*, stores: int, devices: int, members: int, promotions: int, clients: int,
        seconds: float, limit: int, replicas: int = 1,
        endpoints: Sequence[str] = ENDPOINTS) -> dict[str, Any]:
    if find_pg_bin() is None:
        raise BenchError("PostgreSQL is not installed (apt-get install postgresql)")
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        # fsync off: the bench reads; durability of the seed is not what it measures
        pg = Postgres(workdir=root / "pg")
        pg.start()
        stack.callback(pg.stop)
        url = pg.create_database("bench_api")
        started = time.monotonic()
        seeded = seed(url, stores=stores, devices=devices, members=members,
                      promotions=promotions)
        seed_s = time.monotonic() - started
        apis = stack.enter_context(cloud_processes(root, database_url=url, replicas=replicas))
        result = asyncio.run(_measure(apis, seeded, clients=clients, seconds=seconds,
                                      limit=limit, pg_pid=_postmaster_pid(pg),
                                      endpoints=endpoints))
    phases = result["endpoints"]
    base = phases["healthz"]["rps"]
    for phase in phases.values():
        phase["ratio"] = round(phase["rps"] / base, 3) if base else None
    return {
        "bench": "api", "db": "postgres", "clients": clients, "seconds": seconds,
        "replicas": replicas, "limit": limit, "stores": stores, "devices": devices,
        "members": members, "promotions": seeded.promotions, "seed_s": round(seed_s, 1),
        "baseline_rps": base, **result,
        "ok": result["checked"]["ok"] and all(p["errors"] == 0 for p in phases.values()),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


# ---- seeding ----------------------------------------------------------------------------------


def seed(url: str, *, stores: int, devices: int, members: int, promotions: int) -> Seeded:
    """The production schema (alembic) filled: bulk rows, then points and promotions
    through the services the API's writes use."""
    from sqlalchemy import insert

    from cloud.db import make_engine, make_session_factory, upgrade
    from cloud.db.engine import writer
    from cloud.db.models import Device, Store
    from cloud.db.models_loyalty import Member, StoreRegion
    from protocols.ids import uuid7

    engine = make_engine(url)
    try:
        upgrade(engine)
        now = int(time.time() * 1000)
        store_ids = [f"S{i:05d}" for i in range(stores)]
        rng = random.Random(16)
        # a store's devices together, as its first birth inserts them
        per_store = -(-devices // stores)
        device_rows: list[dict[str, Any]] = [{
            "store_id": store_ids[i // per_store], "device_id": f"d{i % per_store:05d}",
            "kind": DEVICE_KINDS[i % len(DEVICE_KINDS)], "online": i % 40 != 0,
            "model": "sf-2", "fw": "3.1.0", "last_seen_ms": now - rng.randrange(60_000),
            "health": {"battery_pct": rng.randrange(100), "rssi_dbm": -rng.randrange(90)}}
            for i in range(devices)]
        births: dict[str, list[dict[str, Any]]] = {}
        for d in device_rows:  # the birth as ingest stores it: the agent's device list
            births.setdefault(d["store_id"], []).append({
                "device_id": d["device_id"], "kind": d["kind"], "online": d["online"],
                "model": d["model"], "fw": d["fw"], "last_seen": d["last_seen_ms"],
                "refused": None})
        with engine.begin() as conn:
            _bulk(conn, insert(Store), ({
                "store_id": s, "online": i % 50 != 0, "bd_seq": 1, "agent_version": "1.4.2",
                "last_birth_ms": now - 86_400_000, "last_seen_ms": now - rng.randrange(60_000),
                "birth": {"v": 1, "online": True, "bd_seq": 1, "ts": now - 86_400_000,
                          "agent_version": "1.4.2", "devices": births.get(s, []),
                          "shadow_version": 3, "outbox_depth": 0}}
                for i, s in enumerate(store_ids)))
            _bulk(conn, insert(StoreRegion), ({"store_id": s, "region": f"R{i % REGIONS}"}
                                             for i, s in enumerate(store_ids)))
            _bulk(conn, insert(Device), iter(device_rows))
            member_ids = [uuid7(now - members + i) for i in range(members)]  # rising: uuid7
            _bulk(conn, insert(Member), ({
                "member_id": m, "created_ms": now - members + i, "is_distributor": i % 100 == 0}
                for i, m in enumerate(member_ids)))
        read = member_ids[:: max(1, members // MEMBERS_READ)][:MEMBERS_READ]
        credited = _credit(make_session_factory(writer(engine)), read, now_ms=now)
        published = _publish(make_session_factory(writer(engine)), promotions, now_ms=now)
        return Seeded(stores=store_ids, members=credited, devices=devices,
                      members_total=members, promotions=published)
    finally:
        engine.dispose()


def _bulk(conn: Any, stmt: Any, rows: Iterator[dict[str, Any]]) -> None:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            conn.execute(stmt, chunk)
            chunk = []
    if chunk:
        conn.execute(stmt, chunk)


def _credit(sessions: Any, member_ids: Sequence[str], *, now_ms: int) -> dict[str, int]:
    from cloud.loyalty import points

    credited: dict[str, int] = {}
    with sessions.begin() as session:
        for i, member_id in enumerate(member_ids):
            amount = 100 + i  # each member's own balance, so a wrong member shows
            points.credit(session, member_id, amount, op_id=f"bench-seed-{i}", now_ms=now_ms,
                          ttl_ms=None)
            credited[member_id] = amount
    return credited


def _publish(sessions: Any, count: int, *, now_ms: int) -> int:
    """``count`` promotions of ``bench.pricing``'s generator (repeated with new ids past
    its ~500), one in ten scoped to a region; published as the next version."""
    from bench.pricing import make_promotions
    from cloud.promotions import service

    generated = make_promotions(random.Random(1)).promotions
    with sessions.begin() as session:
        for i in range(count):
            promo = service.PROMOTION.dump_python(generated[i % len(generated)], mode="json")
            # unique past the generator's ~500, and clear of the reserved tier-/campaign-
            promo["id"] = f"p{i:05d}-{promo['id']}"[:64]
            service.upsert_promotion(session, promo, now_ms=now_ms,
                                     regions=[f"R{i // 10 % REGIONS}"] if i % 10 == 0
                                     else None)
        publication = service.publish(session, now_ms=now_ms, currency="EUR")
        return len(publication.entries)


# ---- the cloud ------------------------------------------------------------------------------


@contextmanager
def cloud_processes(root: Path, *, database_url: str,
                    replicas: int) -> Iterator[list[tuple[str, int]]]:
    """``storefleet cloud serve`` ``replicas`` times on one database; yields their URLs
    and pids.
    No ingest (nothing is sent to a broker: the reads never publish)."""
    env = {**os.environ, "STOREFLEET_API_TOKENS": f"{ADMIN_TOKEN}:hq-admin",
           "STOREFLEET_SCHEDULER_INTERVAL_S": "0", "STOREFLEET_ROLLOUT_INTERVAL_S": "0"}
    unused_broker = f"mqtt://127.0.0.1:{free_port()}"
    procs: list[tuple[subprocess.Popen[bytes], int, Path]] = []
    try:
        for n in range(replicas):
            port = free_port()
            log_path = root / f"cloud-{n}.log"
            argv = [sys.executable, "-m", "storefleet", "cloud", "serve", "--dev",
                    "--host", "127.0.0.1", "--port", str(port), "--db", database_url,
                    "--mqtt", unused_broker, "--log-level", "warning"]
            with open(log_path, "ab") as log:
                procs.append((subprocess.Popen(argv, env=env, stdout=log, stderr=log),
                              port, log_path))
        for proc, port, log_path in procs:
            if not wait_port(port, timeout_s=90):  # imports and migrations, on a loaded box
                said = log_path.read_text(errors="replace")[-2000:]
                raise BenchError(f"the cloud did not listen on {port} (exit status "
                                 f"{proc.poll()}); its log ends:\n{said}")
        yield [(f"http://127.0.0.1:{port}", proc.pid) for proc, port, _ in procs]
    finally:
        for proc, _, _ in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _, _ in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# ---- the load -------------------------------------------------------------------------------

Check = Callable[[httpx.Response], str | None]  # None: the body is right; else why not
Request = tuple[str, Check | None]


async def _measure(apis: Sequence[tuple[str, int]], seeded: Seeded, *, clients: int,
                   seconds: float, limit: int, pg_pid: int,
                   endpoints: Sequence[str]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    # one connection per client (as N separate callers would hold), clients spread over
    # the replicas in turn
    pool = [httpx.AsyncClient(base_url=apis[i % len(apis)][0], headers=headers, timeout=60,
                              limits=httpx.Limits(max_connections=1))
            for i in range(clients)]
    try:
        checked, cursors = await _check(pool[0], seeded, limit=limit)
        plans = _plans(seeded, cursors, limit=limit)
        pids = [pid for _, pid in apis]
        phases = {name: await _phase(pool, plans[name], seconds=seconds, name=name,
                                     server_pids=pids, pg_pid=pg_pid)
                  for name in endpoints}
    finally:
        for client in pool:
            await client.aclose()
    return {"checked": checked, "endpoints": phases}


async def _check(client: httpx.AsyncClient, seeded: Seeded, *,
                 limit: int) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Walk both listings to their ends (every seeded row once), read a member and a
    snapshot; keep the listings' cursors for the deeper pages."""
    stores, store_cursors = await _walk(client, "/api/v1/stores", seeded.stores, limit)
    devices, device_cursors = await _walk(client, "/api/v1/devices", range(seeded.devices),
                                          limit)
    member_id, points = next(iter(seeded.members.items()))
    member = _member_check(member_id, points)(await client.get(f"/api/v1/members/{member_id}"))
    resp = await client.get(f"/api/v1/stores/{seeded.stores[0]}/promotions/snapshot")
    payload = resp.json()["payload"] if resp.status_code == 200 else {}
    promos = len(payload.get("snapshots", {}).get("pos", {}).get("promotions", []))
    checked = {"stores_listed": stores, "devices_listed": devices,
               "member": member or "ok", "snapshot_store": payload.get("store_id"),
               "snapshot_promotions": promos}
    checked["ok"] = (stores == len(seeded.stores) and devices == seeded.devices
                     and member is None and payload.get("store_id") == seeded.stores[0]
                     and promos > 0)
    return checked, {"stores": store_cursors, "devices": device_cursors}


async def _walk(client: httpx.AsyncClient, path: str, rows: Sequence[Any] | range,
                limit: int) -> tuple[int, list[str]]:
    """Rows listed (each key once, or -1), and up to ``CURSOR_PAGES`` cursors spread
    over the walk (its pages are large enough to end within that many)."""
    step = max(limit, min(5_000, -(-len(rows) // CURSOR_PAGES)))
    seen: set[tuple[str, ...]] = set()
    cursors: list[str] = []
    params: dict[str, Any] = {"limit": step}
    while True:
        resp = await client.get(path, params=params)
        if resp.status_code != 200:
            raise BenchError(f"GET {path}: {resp.status_code} {resp.text[:300]}")
        for row in resp.json():
            key = (row["store_id"], row.get("device_id", ""))
            if key in seen:
                return -1, cursors
            seen.add(key)
        if (nxt := resp.headers.get("X-Next-Cursor")) is None:
            return len(seen), cursors[:CURSOR_PAGES]
        cursors.append(nxt)
        params = {"limit": step, "cursor": nxt}


def _member_check(member_id: str, points: int) -> Check:
    def check(resp: httpx.Response) -> str | None:
        if resp.status_code != 200:
            return f"status {resp.status_code}"
        body = resp.json()
        if body.get("member_id") != member_id or body.get("points_balance") != points:
            return f"wrong member: {str(body)[:200]}"
        return None
    return check


def _plans(seeded: Seeded, cursors: dict[str, list[str]], *,
           limit: int) -> dict[str, Callable[[int], Request]]:
    """For each endpoint, the k-th request's path (and body check)."""
    stores, members = seeded.stores, list(seeded.members.items())
    for listing in ("stores", "devices"):
        if not cursors[listing]:
            raise BenchError(f"{listing}: one page holds them all; lower --limit")
    sc, dc = cursors["stores"], cursors["devices"]

    def member(k: int) -> Request:
        member_id, points = members[k % len(members)]
        return f"/api/v1/members/{member_id}", _member_check(member_id, points)

    return {
        "healthz": lambda k: ("/healthz", None),
        "stores": lambda k: (f"/api/v1/stores?limit={limit}", None),
        "stores_cursor": lambda k: (f"/api/v1/stores?limit={limit}&cursor={sc[k % len(sc)]}",
                                    None),
        "store_devices": lambda k: (f"/api/v1/stores/{stores[k % len(stores)]}/devices"
                                    f"?limit={limit}", None),
        "devices": lambda k: (f"/api/v1/devices?limit={limit}", None),
        "devices_cursor": lambda k: (f"/api/v1/devices?limit={limit}"
                                     f"&cursor={dc[k % len(dc)]}", None),
        "member": member,
        "snapshot": lambda k: (f"/api/v1/stores/{stores[k % len(stores)]}/promotions/snapshot",
                               None),
    }


async def _phase(pool: Sequence[httpx.AsyncClient], plan: Callable[[int], Request], *,
                 seconds: float, name: str, server_pids: Sequence[int],
                 pg_pid: int) -> dict[str, Any]:
    """Every client calls ``plan(k)`` back to back; what completes in the window counts."""
    counter = iter(range(1 << 62))
    latencies: list[float] = []
    errors: dict[str, int] = {}
    begin = time.perf_counter() + WARMUP_S
    end = begin + seconds

    def failed(why: str) -> None:
        if why not in errors:
            logger.warning("bench api: %s: %s", name, why)  # the first of each kind
        errors[why] = errors.get(why, 0) + 1

    async def caller(client: httpx.AsyncClient) -> None:
        while (started := time.perf_counter()) < end:
            path, check = plan(next(counter))
            why: str | None
            try:
                resp = await client.get(path)
                why = (check(resp) if check is not None else
                       None if resp.status_code == 200 else f"status {resp.status_code}")
            except httpx.HTTPError as err:
                why = f"{type(err).__name__}: {err}"
            done = time.perf_counter()
            if begin <= done <= end:
                latencies.append(done - started)
                if why is not None:
                    failed(why)

    async def sample() -> tuple[float, float, float]:
        return (sum(_cpu_s(p) for p in server_pids), _tree_cpu_s(pg_pid), time.process_time())

    async def window() -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        await asyncio.sleep(max(0.0, begin - time.perf_counter()))
        first = await sample()
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        return first, await sample()

    watch = asyncio.create_task(window(), name=f"bench-api-window-{name}")
    await asyncio.gather(*(asyncio.create_task(caller(c), name=f"bench-api-{name}-{i}")
                           for i, c in enumerate(pool)))
    (s0, d0, c0), (s1, d1, c1) = await watch
    n = len(latencies)
    latencies.sort()
    per = 1000 / max(n, 1)  # ms of CPU per request from CPU seconds
    return {"requests": n, "rps": round(n / seconds, 1), "errors": sum(errors.values()),
            "error_kinds": errors,
            "p50_ms": round(_quantile(latencies, 0.50) * 1000, 2),
            "p99_ms": round(_quantile(latencies, 0.99) * 1000, 2),
            "server_cpu_ms": round((s1 - s0) * per, 3), "db_cpu_ms": round((d1 - d0) * per, 3),
            "client_cpu_ms": round((c1 - c0) * per, 3)}


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# ---- helpers ----------------------------------------------------------------------------------


def _cpu_s(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU seconds of a live process (``/proc/<pid>/stat``), with those of
    its reaped children if ``reaped``; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(f) for f in fields[11:15 if reaped else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid``, of its children that ended (the kernel adds a reaped
    child's to its parent's ``cutime``/``cstime``: PostgreSQL's backends of connections
    the pool closed) and of its live children (the backends)."""
    total = _cpu_s(pid, reaped=True)
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return total
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        total += sum(_cpu_s(int(c)) for c in children)
    return total


def _postmaster_pid(pg: Postgres) -> int:
    return int((pg.workdir / "data" / "postmaster.pid").read_text().split()[0])


def _report(result: dict[str, Any], *, as_json: bool) -> None:
    print(f"PostgreSQL, {result['stores']:,} stores, {result['devices']:,} devices, "
          f"{result['members']:,} members, {result['promotions']} promotions (seeded in "
          f"{result['seed_s']} s); {result['clients']} clients, {result['replicas']} "
          f"replica(s), {result['seconds']} s each; checked {result['checked']}")
    for name, p in result["endpoints"].items():
        print(f"{name:>15}: {p['rps']:>8,.1f} req/s (ratio {p['ratio']}), p50 {p['p50_ms']} "
              f"ms, p99 {p['p99_ms']} ms, errors {p['errors']}; CPU ms/request: server "
              f"{p['server_cpu_ms']}, db {p['db_cpu_ms']}, client {p['client_cpu_ms']}")
    if as_json:
        print(json.dumps(result))


if __name__ == "__main__":
    raise SystemExit(main())
