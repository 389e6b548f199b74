"""Rollout of one artifact to a simulated fleet: a 50 MB artifact to 100 boxes on this
machine; how long until the rollout completes, and what it costs the cloud.

What runs: two Mosquitto brokers (the cloud's, and the boxes' shared local bus); the
cloud as its own process (``storefleet cloud serve --ingest``: API, MQTT publisher,
ingest and the rollout offerer, SQLite), so that its peak RSS (``VmHWM``) is its own;
and in this process the boxes of ``firmware_sim.fleet``, each the production agent with
the ``updates`` module (decision 0045). The artifact is uploaded through the API, the
rollout created through the API (a canary, then waves of ``--wave-size``, 100 % to
advance); the offers reach the boxes over MQTT; each box downloads into its own cache
with ``Range`` support, checks signature, sha256 and target, and reports each step
through its outbox to ingest, whose hook completes the rollout.

``seconds``: from the rollout's creation to its completion (the upload is not in it).
``cloud_bytes_served``: the cloud's own counter of artifact bytes sent
(``storefleet_artifact_served_bytes_total``). ``cloud_peak_rss_mb``: the cloud
process's ``VmHWM``. The boxes' caches (boxes x size on disk) live in a temporary
directory, removed at the end.

    python -m bench.rollout --json                     # 100 boxes, 50 MB
    storefleet bench rollout --json --boxes 3 --size-mb 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from bench._services import (
    ADMIN_TOKEN,
    DEVICE_TOKEN,
    BenchError,
    cloud,
    metric_value,
    mosquitto,
    peak_rss_mb,
)
from firmware_sim.fleet import SimulatedFleet

MB = 1024 * 1024
TARGET = "firmware:bench/blob-1"
DEVICE = "blob-1"
UPLOAD_CHUNK = MB


async def random_chunks(size: int) -> AsyncIterator[bytes]:
    left = size
    while left:
        chunk = os.urandom(min(UPLOAD_CHUNK, left))
        left -= len(chunk)
        yield chunk


async def until(http: httpx.AsyncClient, rollout_id: str, *, timeout_s: float
                ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = await http.get(f"/api/v1/rollouts/{rollout_id}")
        r.raise_for_status()
        rollout: dict[str, Any] = r.json()
        if rollout["state"] in ("completed", "halted", "aborted"):
            return rollout
        if time.monotonic() > deadline:
            return rollout
        await asyncio.sleep(0.25)


async def measure(tmp: Path, *, boxes: int, size_mb: float, canary: int, wave_size: int,
                  timeout_s: float) -> dict[str, Any]:
    size = int(size_mb * MB)
    with mosquitto(tmp / "cloud-broker") as cloud_broker, \
            mosquitto(tmp / "local-bus") as local_bus, \
            cloud(tmp / "cloud", broker=cloud_broker) as (api, cloud_pid):
        async with httpx.AsyncClient(base_url=api, timeout=60,
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                                     ) as http:
            keys = (await http.get("/api/v1/artifacts/keys")).json()
            started = time.perf_counter()
            async with SimulatedFleet(tmp / "boxes", boxes=boxes, cloud_broker=cloud_broker,
                                      local_bus=local_bus, api_url=api, token=DEVICE_TOKEN,
                                      trusted_keys=[k["public_key"] for k in keys]) as fleet:
                while True:  # every box born (ingest has its store)
                    born = {s["store_id"] for s in (await http.get("/api/v1/stores")).json()}
                    if born >= set(fleet.stores):
                        break
                    if time.perf_counter() - started > timeout_s:
                        raise BenchError(f"{len(set(fleet.stores) - born)} boxes not born")
                    await asyncio.sleep(0.2)
                fleet_up_s = time.perf_counter() - started
                r = await http.post("/api/v1/artifacts", content=random_chunks(size),
                                    params={"kind": "firmware", "target": TARGET,
                                            "version": "2.0.0"})
                r.raise_for_status()
                sha = r.json()["payload"]["sha256"]
                t0 = time.perf_counter()
                r = await http.post("/api/v1/rollouts", json={
                    "sha256": sha, "device": DEVICE, "stores": fleet.stores,
                    "canary_size": canary, "wave_size": wave_size,
                    "deadline_s": max(60, int(timeout_s))})
                r.raise_for_status()
                rollout = await until(http, r.json()["id"], timeout_s=timeout_s)
                seconds = time.perf_counter() - t0
                metrics = (await http.get("/metrics")).text
                cloud_rss = peak_rss_mb(cloud_pid)
    completed = sum(t["state"] == "succeeded" for t in rollout["targets"])
    served = metric_value(metrics, "storefleet_artifact_served_bytes_total")
    return {
        "bench": "rollout",
        "boxes": boxes,
        "artifact_mb": round(size / MB, 1),
        "completed": completed,
        "state": rollout["state"],
        "waves": len(rollout["waves"]),
        "seconds": round(seconds, 2),
        "boxes_per_s": round(completed / seconds, 2) if seconds else None,
        "delivered_mb_per_s": round(completed * size / MB / seconds, 1) if seconds else None,
        "cloud_bytes_served": int(served),
        "served_per_box_mb": round(served / MB / boxes, 2),
        "cloud_peak_rss_mb": cloud_rss,
        "boxes_peak_rss_mb": peak_rss_mb(os.getpid()),
        "fleet_up_s": round(fleet_up_s, 2),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="storefleet bench rollout",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--boxes", type=int, default=100, help="simulated boxes")
    parser.add_argument("--size-mb", type=float, default=50.0, help="artifact size (MiB)")
    parser.add_argument("--canary", type=int, default=1, help="boxes in the first wave")
    parser.add_argument("--wave-size", type=int, default=20, help="boxes per later wave")
    parser.add_argument("--timeout-s", type=float, default=900.0,
                        help="give up on the rollout after this long")
    args = parser.parse_args(argv)
    if args.boxes < 1 or args.canary < 1 or args.wave_size < 1 or args.size_mb <= 0:
        parser.error("--boxes, --canary, --wave-size and --size-mb must be positive")
    # A hundred agents log their connects and downloads: only what went wrong is shown.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="sf-bench-rollout-") as tmp:
        try:
            r = asyncio.run(measure(Path(tmp), boxes=args.boxes, size_mb=args.size_mb,
                                    canary=args.canary, wave_size=args.wave_size,
                                    timeout_s=args.timeout_s))
        except BenchError as err:
            print(f"bench rollout: {err}", file=sys.stderr)
            return 2
    print(f"rollout of {r['artifact_mb']} MiB to {r['boxes']} boxes in {r['waves']} waves: "
          f"{r['state']}, {r['completed']} completed in {r['seconds']} s "
          f"({r['delivered_mb_per_s']} MiB/s delivered)")
    print(f"cloud: {r['cloud_bytes_served'] / MB:.0f} MiB served "
          f"({r['served_per_box_mb']} MiB per box), peak RSS {r['cloud_peak_rss_mb']} MiB; "
          f"boxes' process peak RSS {r['boxes_peak_rss_mb']} MiB")
    if args.json:
        print(json.dumps(r, sort_keys=True))
    return 0 if r["completed"] == r["boxes"] else 1


if __name__ == "__main__":
    sys.exit(main())
