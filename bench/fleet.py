"""5,000 simulated stores on one Mosquitto and one cloud node on this machine (issue 16,
decision 0057).

What runs: Mosquitto (``max_connections -1``, the bench's raised open-file limit
inherited); the cloud as its own process (``storefleet cloud serve --ingest``, SQLite,
``bench._services.cloud``); the stores in ``--processes`` processes of
``storefleet sim fleet`` (``firmware_sim.loadgen``: each store its own MQTT session,
birth, Will, outbox, traffic, command answers), each writing its counters to a status
file the bench reads. HQ publishes a promotion once every store is up, so sales are
priced and audited.

- ``stores_connected``: sessions held once every store is up (``connect_s`` to get there,
  every store answered by the cloud's ``ready``).
- ``events_stored_per_s``: the cloud's own count of events stored
  (``storefleet_ingest_events_stored_by_kind_total``) over ``--steady-s``, against
  ``events_offered_per_s`` (what the stores made).
- ``recovery_s``: Mosquitto killed and started again on its port; from the kill until
  every store is connected again, answered by the cloud, and every event made before
  the broker listened again has left its outbox (the cloud acknowledged it); null when
  that did not happen within ``--timeout-s`` (``recovery_left`` says what was left), and
  the fan-out is measured all the same.
- ``command_fanout_s``: ``ping`` to every store as one fleet-wide command (``POST
  /fleet/commands {"all": true}``, decision 0061: one command per store inserted in one
  transaction, published pipelined), then ``GET /fleet/commands/{id}`` (a count by
  status) until every store's result is stored; from the POST to the last result (null
  when some had none within ``--timeout-s``: ``command_results`` says how many are
  ``pending``). ``command_post_s``: the POST alone (5,000 rows and publishes).

    python -m bench.fleet --stores 5000 --json
    storefleet bench fleet --stores 20 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench._services import (
    ADMIN_TOKEN,
    DEVICE_TOKEN,
    BenchError,
    cloud,
    find_mosquitto,
    free_port,
    peak_rss_mb,
    wait_port,
)
from firmware_sim.loadgen.fleet import raise_fd_limit

logger = logging.getLogger(__name__)

STORES_PER_PROCESS = 2_500  # what one asyncio process holds with room (see decision 0057)
POLL_S = 0.5
FANOUT_POLL_S = 0.5  # between reads of the fan-out's progress (one GROUP BY each)
PREFIX = "BF"
PROMOTION = {"kind": "threshold", "id": "bench-spend-10", "min_spend": 1_000,
             "amount_off": 100}


Sim = tuple[subprocess.Popen[bytes], Path]  # a simulator process and its status file


class Mosquitto:
    """The cloud broker, killed and started again on the same port (no persistence:
    what a crash without a disk looks like; stores and ingest subscribe again)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            "max_connections -1\n"  # 5,000 stores and the cloud (the default is -1 too)
            "max_queued_messages 10000\n"  # a store's queue across a short outage
            + ("user root\n" if os.geteuid() == 0 else ""))  # workdir is root's

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.workdir / "mosquitto.log", "ab") as log:
            self.proc = subprocess.Popen(
                [find_mosquitto(), "-c", str(self.workdir / "mosquitto.conf")],
                stdout=log, stderr=log)
        if not wait_port(self.port, timeout_s=20):
            raise BenchError(f"mosquitto did not listen on {self.port}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@contextmanager
def sim_processes(workdir: Path, *, broker: str, api: str, stores: int, processes: int,
                  rate: float, tele_interval_s: float) -> Iterator[list[Sim]]:
    """``storefleet sim fleet`` processes sharing ``stores`` between them."""
    procs: list[Sim] = []
    per = math.ceil(stores / processes)
    try:
        for n in range(processes):
            count = min(per, stores - n * per)
            if count <= 0:
                break
            status = workdir / f"sim-{n}.json"
            argv = [sys.executable, "-m", "storefleet", "sim", "fleet", "--broker", broker,
                    "--stores", str(count), "--first", str(n * per), "--prefix", PREFIX,
                    "--rate", str(rate), "--api", api, "--token", DEVICE_TOKEN,
                    "--tele-interval", str(tele_interval_s), "--status-file", str(status),
                    "--seed", str(n)]
            with open(workdir / f"sim-{n}.log", "ab") as log:
                procs.append((subprocess.Popen(argv, stdout=log, stderr=log), status))
        yield procs
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def fleet_status(procs: list[Sim]) -> dict[str, Any]:
    """The processes' counters added up (a process not written yet counts nothing)."""
    total: dict[str, Any] = {"connected": 0, "ready": 0, "produced": 0, "acked": 0,
                             "outbox_depth": 0, "commands_answered": 0, "connects": 0,
                             "outbox_oldest_ts": None, "errors": {}}
    for proc, path in procs:
        if proc.poll() is not None:
            raise BenchError(f"a simulator process ended (status {proc.returncode}); "
                             f"see {path.with_suffix('.log')}")
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for key in ("connected", "ready", "produced", "acked", "outbox_depth",
                    "commands_answered", "connects"):
            total[key] += status[key]
        oldest = status.get("outbox_oldest_ts")
        if oldest is not None:
            total["outbox_oldest_ts"] = min(oldest, total["outbox_oldest_ts"] or oldest)
        for reason, n in status["errors"].items():
            total["errors"][reason] = total["errors"].get(reason, 0) + n
    return total


async def until(what: str, done: Callable[[], Awaitable[bool]], *, timeout_s: float) -> float:
    """Seconds until ``done()``; ``BenchError`` after ``timeout_s``."""
    start = time.perf_counter()
    while not await done():
        if time.perf_counter() - start > timeout_s:
            raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(POLL_S)
    return time.perf_counter() - start


def events_stored(metrics_text: str) -> float:
    """The cloud's events stored, all kinds."""
    pattern = r"^storefleet_ingest_events_stored_by_kind_total\{[^}]*\} (\S+)$"
    return sum(float(v) for v in re.findall(pattern, metrics_text, re.MULTILINE))


async def fan_out(http: httpx.AsyncClient, stores: int, *,
                  timeout_s: float) -> tuple[float | None, dict[str, int], float]:
    """``ping`` every store with one fleet-wide command and follow it until every result
    is stored: (seconds, results by status, seconds of the POST); the seconds are None
    when some had no result within ``timeout_s`` (counted as ``pending``: the other
    figures of the run still stand)."""
    start = time.perf_counter()
    r = await http.post("/api/v1/fleet/commands",
                        # lives as long as the bench waits for it
                        json={"all": True, "name": "ping", "ttl_s": int(timeout_s) + 60},
                        headers={"Idempotency-Key": f"bench-fleet-{os.getpid()}"})
    post_s = time.perf_counter() - start
    if r.status_code != 202:
        raise BenchError(f"fleet-wide command: {r.status_code} {r.text[:200]}")
    fanout = r.json()
    if fanout["stores"] != stores:
        raise BenchError(f"fleet-wide command reached {fanout['stores']} of {stores} stores")
    path = f"/api/v1/fleet/commands/{fanout['fanout_id']}"
    while not fanout["done"]:
        if time.perf_counter() - start > timeout_s:
            logger.warning("%d commands without a result after %.0f s",
                           fanout["counts"]["sent"], timeout_s)
            results = {k: v for k, v in fanout["by_status"].items() if k != "pending"}
            return None, {**results, "pending": fanout["counts"]["sent"]}, post_s
        await asyncio.sleep(FANOUT_POLL_S)
        r = await http.get(path)
        if r.status_code != 200:
            raise BenchError(f"fleet-wide command's progress: {r.status_code} {r.text[:200]}")
        fanout = r.json()
    return time.perf_counter() - start, dict(fanout["by_status"]), post_s


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    raise_fd_limit()  # the broker and the simulators inherit it
    broker = Mosquitto(workdir / "broker")
    broker.start()
    try:
        with cloud(workdir / "cloud", broker=broker.url) as (api, cloud_pid), \
                sim_processes(workdir, broker=broker.url, api=api, stores=args.stores,
                              processes=args.processes, rate=args.rate,
                              tele_interval_s=args.tele_interval_s) as procs:
            return await _measure(args, broker, api, cloud_pid, procs)
    finally:
        broker.kill()


async def _measure(args: argparse.Namespace, broker: Mosquitto, api: str, cloud_pid: int,
                   procs: list[Sim]) -> dict[str, Any]:
    n, timeout = args.stores, args.timeout_s
    status: dict[str, Any] = {}

    async def all_ready() -> bool:
        status.update(fleet_status(procs))
        return bool(status["connected"] == n and status["ready"] == n)

    async with httpx.AsyncClient(base_url=api, timeout=60,
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        connect_s = await until("every store connected", all_ready, timeout_s=timeout)
        stores_connected = status["connected"]
        r = await http.put(f"/api/v1/promotions/{PROMOTION['id']}",
                           json={"promotion": PROMOTION})
        r2 = await http.post("/api/v1/promotions/publish")
        if r.status_code >= 300 or r2.status_code >= 300:
            raise BenchError(f"promotion not published: {r.text[:200]} {r2.text[:200]}")

        # ---- steady state ----
        await asyncio.sleep(min(5.0, args.steady_s))  # snapshots fetched, sales begin
        before, produced0 = events_stored((await http.get("/metrics")).text), \
            fleet_status(procs)["produced"]
        t0 = time.perf_counter()
        await asyncio.sleep(args.steady_s)
        after, produced1 = events_stored((await http.get("/metrics")).text), \
            fleet_status(procs)["produced"]
        steady_s = time.perf_counter() - t0

        # ---- broker restart ----
        killed = time.perf_counter()
        broker.kill()
        await asyncio.sleep(args.outage_s)
        broker.start()
        back_ms = int(time.time() * 1000)

        async def recovered() -> bool:
            status.update(fleet_status(procs))
            oldest = status["outbox_oldest_ts"]
            return bool(status["connected"] == n and status["ready"] == n
                        and (oldest is None or oldest > back_ms))

        recovery_s: float | None = None
        try:
            await until("every store back and drained", recovered, timeout_s=timeout)
            recovery_s = time.perf_counter() - killed
        except BenchError as err:  # the other figures still stand: report, go on
            logger.warning("%s", err)
        left = {k: status[k] for k in ("connected", "ready", "outbox_depth")}

        # ---- command fan-out ----
        fanout_s, results, post_s = await fan_out(http, n, timeout_s=timeout)
        audit = (await http.get("/api/v1/promotions/audit")).json()
        final = fleet_status(procs)
        return {
            "bench": "fleet", "stores": n, "processes": len(procs), "rate_per_store": args.rate,
            "tele_interval_s": args.tele_interval_s,
            "stores_connected": stores_connected, "connect_s": round(connect_s, 2),
            "events_stored_per_s": round((after - before) / steady_s, 1),
            "events_offered_per_s": round((produced1 - produced0) / steady_s, 1),
            "recovery_s": None if recovery_s is None else round(recovery_s, 2),
            "recovery_left": None if recovery_s is not None else left,
            "outage_s": args.outage_s,
            "command_fanout_s": None if fanout_s is None else round(fanout_s, 2),
            "command_post_s": round(post_s, 2), "commands_ok": results.get("ok", 0),
            "command_results": results,
            "sales_audited": audit.get("audited"), "sales_mismatched": audit.get("mismatched"),
            "sales_unaudited": audit.get("unaudited"),
            "cloud_peak_rss_mb": peak_rss_mb(cloud_pid),
            "sim_peak_rss_mb": [peak_rss_mb(p.pid) for p, _ in procs],
            "sim_errors": final["errors"],
            "cpus": os.cpu_count(), "python": platform.python_version(),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=5_000)
    parser.add_argument("--processes", type=int, default=0,
                        help=f"simulator processes (0: one per {STORES_PER_PROCESS} stores)")
    parser.add_argument("--rate", type=float, default=0.01, help="events/s per store")
    parser.add_argument("--tele-interval-s", type=float, default=120.0,
                        help="each store's telemetry (a fridge, its outbox) this often")
    parser.add_argument("--steady-s", type=float, default=20.0)
    parser.add_argument("--outage-s", type=float, default=2.0, help="broker down this long")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.processes <= 0:
        args.processes = max(1, math.ceil(args.stores / STORES_PER_PROCESS))
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        try:
            result = asyncio.run(measure(args, Path(tmp)))
        except BenchError as err:
            print(f"bench fleet failed: {err}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
