"""A new audio schedule from HQ to 100 simulated stores: how long from publishing it
until every store's audio unit plays it (issue 15, decisions 0046, 0048, 0050).

What runs: Mosquitto for the cloud, and one per store for its local bus (the local
topics carry no store id: stores sharing a broker would see each other's units); the
cloud as its own process (``storefleet cloud serve --ingest``: API, MQTT publisher,
ingest, SQLite), so that its peak RSS is its own; in this process the stores
(``firmware_sim.fleet``: each the production agent with the ``content`` and ``audio``
modules and an audio unit driver) and each store's simulated audio unit
(``firmware_sim.audio``) on that store's bus.

The path measured, all of it real: HQ uploads a WAV recording (``POST /artifacts``,
kind ``asset``), saves the chain's schedule playing it all day (``PUT
/audio/schedule``) and publishes it (``POST /audio/schedule/publish``: each store's
signed content manifest, retained on its ``content/manifest`` topic). Each box checks
the manifest, downloads the recording from the cloud into its content cache
(signature, sha256), switches, hands recording and schedule to its audio unit driver,
which sends the recording to the unit in acknowledged chunks over the store's bus and
the output naming it. A store *plays* the schedule when its unit's current music
segment is the new recording and the unit holds that recording decoded (a unit that
was told to play a track it does not have would be silent), stamped by the unit when
the message that made it so was taken.

The stores start with a first schedule (all at once: ``first_schedule_playing_s``,
the same spread for boxes that had none); the figures below are for a new one
replacing it, as HQ changes music or announcements: the units hold the old recording
and are sent the new one.

- ``publish_s``: the publish API call. ``playing_s``: p50 / p95 / max over the stores
  of the time from the publish call to the store playing; ``all_playing_s`` the time
  until the last one does (the max).
- ``applied_s``: until the box switched to the manifest (checked, recording downloaded
  and verified): the rest of ``playing_s`` is the hand-over to the unit over its bus.
- ``converged_s``: the same until the cloud's ``GET /content/status`` shows the store's
  ``schedule`` part converged (the box reported, through its outbox and ingest, that
  every unit's driver runs the schedule: that can come before the unit holds the
  recording; polled every ``STATUS_POLL_S``).
- ``baseline_s``: in the same run, before the fleet-wide publish, one more store
  (running beside the others) given a schedule of its own alone, publish to playing;
  the median of ``--baseline-rounds`` such publishes, each with a new recording.
- ``asset_bytes_served``: the cloud's own counter of artifact bytes sent during the
  fleet-wide publish; ``unit_bytes_sent``: what the drivers sent their units.
- ``stores_cpu_s``, ``cloud_cpu_s``: CPU seconds of this process and of the cloud's
  from the publish to the last store playing (``wall_s``): the stores share one
  process on this machine's cores, where each has a box of its own.
- ``cloud_peak_rss_mb``, ``stores_peak_rss_mb`` (this process: agents and units),
  ``local_buses_pss_mb`` (the stores' Mosquittos together at the end, proportional set
  size: they share their libraries' pages).

    python -m bench.content --json                     # 100 stores
    storefleet bench content --json --stores 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx

from bench._services import (
    ADMIN_TOKEN,
    DEVICE_TOKEN,
    BenchError,
    Broker,
    cloud,
    metric_value,
    mosquitto,
    mosquittos,
    peak_rss_mb,
)
from edge_agent.app import Agent
from edge_agent.modules.content import AppliedContent, Content
from firmware_sim.audio import AudioUnitSim
from firmware_sim.audio.unit import tone_wav
from firmware_sim.fleet import SimulatedFleet

logger = logging.getLogger(__name__)

POLL_S = 0.1  # how often the bench looks whether every unit plays (stamps are exact)
STATUS_POLL_S = 0.25  # how often the cloud's content status is asked for
RATE = 8000  # Hz, 16-bit mono: what the demo's and the tests' recordings use
ZONE = "floor"
TRACK = "tone"
BASELINE = "base"  # the baseline store's prefix
FIRST_HZ, BASELINE_HZ, FLEET_HZ = 330, 440, 660  # each recording a tone of its own


def recording(hz: int, seconds: float) -> bytes:
    """A WAV of PCM 16-bit mono: a tone at half of full scale."""
    return tone_wav(hz, seconds, rate=RATE)


def schedule(sha256: str, *, seconds: float) -> dict[str, Any]:
    """The chain's schedule (``cloud.audio.model.AudioScheduleSpec``): the recording,
    looped all day every day, so any time of the run plays it."""
    return {"tracks": {TRACK: {"sha256": sha256, "duration_ms": int(seconds * 1000),
                               "title": f"bench tone {sha256[:8]}"}},
            "zones": {ZONE: {"volume_db": -6.0}},
            "dayparts": [{"name": "all-day", "start": "00:00", "end": "24:00",
                          "playlist": [TRACK]}]}


def plays(unit: AudioUnitSim, sha256: str) -> bool:
    segment = unit.current.get((ZONE, "music"))
    return segment is not None and segment.sha256 == sha256 and sha256 in unit.assets


class TimedUnit(AudioUnitSim):
    """The simulated unit, noting when it first plays ``wanted``: after the message
    (an output or an asset's last chunk) that made it play, not at the bench's next
    look."""

    wanted: str | None = None
    playing_at: float | None = None

    def expect(self, sha256: str) -> None:
        self.wanted, self.playing_at = sha256, None

    def _check(self) -> None:
        if self.playing_at is None and self.wanted and plays(self, self.wanted):
            self.playing_at = time.perf_counter()

    async def on_message(self, payload: bytes) -> None:
        await super().on_message(payload)
        self._check()

    async def on_down(self, type_: str, payload: bytes) -> None:
        await super().on_down(type_, payload)
        self._check()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in (0, 100]): a value some store really took."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def until(what: str, done: Callable[[], Awaitable[bool]], *, timeout_s: float,
                every_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not await done():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(every_s)


def body_of(r: httpx.Response, what: str) -> Any:
    if r.status_code >= 300:
        raise BenchError(f"{what}: {r.status_code} {r.text[:300]}")
    return r.json()


class Hq:
    """HQ's side through the API: upload a recording, save the schedule, publish it,
    read the stores' content status."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.errors = 0  # status requests that failed in transport (asked again)

    async def new_schedule(self, hz: int, seconds: float) -> tuple[str, int]:
        """Upload a recording, save a schedule playing it: (its sha256, the version)."""
        r = await self.http.post("/api/v1/artifacts", content=recording(hz, seconds),
                                 params={"kind": "asset", "target": "content",
                                         "version": f"tone-{hz}"})
        sha = body_of(r, "upload")["payload"]["sha256"]
        r = await self.http.put("/api/v1/audio/schedule", json=schedule(sha, seconds=seconds))
        return sha, int(body_of(r, "save")["version"])

    async def publish(self, stores: list[str]) -> dict[str, Any]:
        r = await self.http.post("/api/v1/audio/schedule/publish", json={"stores": stores})
        body: dict[str, Any] = body_of(r, "publish")
        if body["failed"] or body["without_unit"] or len(body["manifests"]) != len(stores):
            raise BenchError(f"publish did not reach every store: {body}")
        return body

    async def converged(self, version: int) -> set[str]:
        """The stores whose ``schedule`` part shows ``version`` converged."""
        rows = body_of(await self.http.get("/api/v1/content/status"), "content status")
        return {s["store_id"] for s in rows
                if (part := s["parts"].get("schedule"))
                and part["state"] == "converged" and part["published"] == str(version)}


async def watch(units: dict[str, TimedUnit], t0: float, *, timeout_s: float
                ) -> dict[str, float]:
    """Seconds from t0 until each store's unit played what it ``expect``s."""
    deadline = t0 + timeout_s
    while behind := sorted(s for s, u in units.items() if u.playing_at is None):
        if time.perf_counter() > deadline:
            raise BenchError(f"{len(behind)} of {len(units)} stores not playing after "
                             f"{timeout_s:.0f} s, e.g. {behind[:3]}")
        await asyncio.sleep(POLL_S)
    return {s: u.playing_at - t0 for s, u in units.items() if u.playing_at is not None}


async def watch_status(hq: Hq, stores: list[str], version: int, t0: float,
                       stop: asyncio.Event) -> dict[str, float]:
    """Seconds from t0 until the cloud shows each store's schedule part converged."""
    seen: dict[str, float] = {}
    while len(seen) < len(stores) and not stop.is_set():
        try:
            done = await hq.converged(version)
        except httpx.TransportError as err:
            # e.g. a kept-alive connection the loaded cloud closed as it was reused:
            # counted, logged, asked again (the units' stamps are the main measure)
            hq.errors += 1
            logger.warning("content status: %r; asking again", err)
            await asyncio.sleep(STATUS_POLL_S)
            continue
        now = time.perf_counter()
        seen.update((s, now - t0) for s in stores if s in done and s not in seen)
        await asyncio.sleep(STATUS_POLL_S)
    return seen


def note_applied(agents: list[Agent], version: int, t0: float) -> dict[str, float]:
    """Seconds from t0 until each box switched to a manifest carrying schedule
    ``version`` (downloaded and verified its recording): filled in as they do."""
    seen: dict[str, float] = {}
    for agent in agents:
        content = agent.modules["content"]
        assert isinstance(content, Content)

        def listener(applied: AppliedContent, store: str = agent.config.store_id) -> None:
            doc = applied.manifest.documents.get("schedule")
            if isinstance(doc, dict) and doc.get("version") == version:
                seen.setdefault(store, time.perf_counter() - t0)

        content.on_applied(listener)
    return seen


def spread(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 2), "p95": round(percentile(values, 95), 2),
            "max": round(max(values), 2)} if values else {}


def sent_to_units(agents: list[Agent]) -> float:
    """Asset bytes the stores' audio drivers have sent their units, all together."""
    return sum(sum(sample.value for sample in metric.samples
                   if sample.name == "storefleet_audio_asset_bytes_sent_total")
               for agent in agents for metric in agent.metrics.registry.collect())


def cpu_s(pid: int) -> float:
    """User and system CPU seconds the process has used (``/proc/<pid>/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    except OSError as err:
        raise BenchError(f"cannot read the CPU time of {pid} (Linux /proc): {err}") from err
    # utime and stime: fields 14 and 15 of stat(5), 12 and 13 after the command name
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pss_kb(pid: int) -> int:
    """The process's proportional set size: its RSS with shared pages (a hundred
    Mosquittos map the same libraries) divided among those who share them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="ascii").splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError as err:
        raise BenchError(f"cannot read the PSS of {pid} (Linux /proc): {err}") from err
    raise BenchError(f"no Pss in /proc/{pid}/smaps_rollup")


def unit_of(store: str) -> str:
    return f"{store}-audio"


async def start_stores(stack: AsyncExitStack, tmp: Path, http: httpx.AsyncClient, *,
                       stores: int, buses: list[Broker], cloud_broker: str, api: str
                       ) -> tuple[list[SimulatedFleet], dict[str, TimedUnit]]:
    """The measured stores and the baseline's (two fleets), each store's agent on its
    own bus with its audio unit there; stopped by ``stack``."""
    release = [k["public_key"] for k in body_of(await http.get("/api/v1/artifacts/keys"),
                                                "release keys")]
    signing = [k["public_key"] for k in body_of(await http.get("/api/v1/promotions/keys"),
                                                "signing keys")]
    modules = {"content": {"cloud_api": api, "cloud_api_token": DEVICE_TOKEN,
                           "trusted_keys": signing, "release_keys": release,
                           "retry_s": 1.0}}
    fleets: list[SimulatedFleet] = []
    units: dict[str, TimedUnit] = {}
    for prefix, count, bus_urls in (("store", stores, [b.url for b in buses[:-1]]),
                                    (BASELINE, 1, [buses[-1].url])):
        fleet = SimulatedFleet(
            tmp / prefix, boxes=count, cloud_broker=cloud_broker, local_bus=bus_urls,
            api_url=api, token=DEVICE_TOKEN, trusted_keys=release, prefix=prefix,
            modules=modules, devices=lambda s: [{"id": unit_of(s), "family": "audio"}])
        fleets.append(await stack.enter_async_context(fleet))
        for store, url in zip(fleet.stores, bus_urls, strict=True):
            unit = TimedUnit(url, unit_id=unit_of(store))
            await unit.start()
            stack.push_async_callback(unit.aclose)
            units[store] = unit
    return fleets, units


async def alone(hq: Hq, store: str, unit: TimedUnit, *, rounds: int, seconds: float,
                timeout_s: float) -> list[float]:
    """The baseline: one store alone, the others running beside it, publish to playing;
    each round a new recording and schedule (their median: one sample swings with the
    load)."""
    times = []
    for i in range(rounds):
        sha, _ = await hq.new_schedule(BASELINE_HZ + 20 * i, seconds)
        unit.expect(sha)
        t0 = time.perf_counter()
        await hq.publish([store])
        times.append((await watch({store: unit}, t0, timeout_s=timeout_s))[store])
    return times


async def measure(tmp: Path, *, stores: int, seconds: float, baseline_rounds: int,
                  timeout_s: float) -> dict[str, Any]:
    names = [f"store-{i:04d}" for i in range(stores)]
    with mosquitto(tmp / "cloud-broker") as cloud_broker, \
            mosquittos([tmp / "bus" / s for s in [*names, f"{BASELINE}-0000"]]) as buses, \
            cloud(tmp / "cloud", broker=cloud_broker) as (api, cloud_pid):
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(httpx.AsyncClient(
                base_url=api, timeout=120, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}))
            hq = Hq(http)
            started = time.perf_counter()
            fleets, units = await start_stores(stack, tmp, http, stores=stores, buses=buses,
                                               cloud_broker=cloud_broker, api=api)
            measured, base = fleets[0].stores, fleets[1].stores[0]

            async def all_known() -> bool:  # born, with their units (what publish selects)
                r = await http.get("/api/v1/devices", params={"kind": "audio", "limit": 5000})
                return len(r.json()) >= stores + 1
            await until("every store's audio unit known to the cloud", all_known,
                        timeout_s=timeout_s)
            fleet_up_s = time.perf_counter() - started

            # Every store's first schedule (boxes with none yet): what is measured below
            # is a new schedule replacing the one a store plays.
            sha, _ = await hq.new_schedule(FIRST_HZ, seconds)
            for unit in units.values():
                unit.expect(sha)
            t0 = time.perf_counter()
            await hq.publish([*measured, base])
            first = await watch(units, t0, timeout_s=timeout_s)

            baseline = await alone(hq, base, units[base], rounds=baseline_rounds,
                                   seconds=seconds, timeout_s=timeout_s)

            sent_before = sent_to_units(fleets[0].agents)
            served_before = metric_value((await http.get("/metrics")).text,
                                         "storefleet_artifact_served_bytes_total")
            sha, version = await hq.new_schedule(FLEET_HZ, seconds)
            for store in measured:
                units[store].expect(sha)
            stop = asyncio.Event()
            cpu0 = cpu_s(os.getpid()), cpu_s(cloud_pid)
            t0 = time.perf_counter()
            applied = note_applied(fleets[0].agents, version, t0)
            status_task = asyncio.create_task(watch_status(hq, measured, version, t0, stop),
                                              name="bench-content-status")
            try:
                published = await hq.publish(measured)
                publish_s = time.perf_counter() - t0
                playing = await watch({s: units[s] for s in measured}, t0,
                                      timeout_s=timeout_s)
                wall_s = time.perf_counter() - t0
                cpu = cpu_s(os.getpid()) - cpu0[0], cpu_s(cloud_pid) - cpu0[1]
                try:  # the status lags the units by the box's report and ingest
                    converged = await asyncio.wait_for(asyncio.shield(status_task), 30)
                except TimeoutError:
                    stop.set()
                    converged = await status_task
            finally:
                stop.set()
                await asyncio.gather(status_task, return_exceptions=True)
            metrics = (await http.get("/metrics")).text
            served = metric_value(metrics, "storefleet_artifact_served_bytes_total")
            unit_bytes = sent_to_units(fleets[0].agents) - sent_before
            cloud_rss = peak_rss_mb(cloud_pid)
            buses_pss = sum(pss_kb(b.pid) for b in buses) / 1024
    times = list(playing.values())
    return {
        "bench": "content",
        "stores": stores,
        "playing": len(playing),
        "recording_bytes": len(recording(FLEET_HZ, seconds)),
        "recording_s": seconds,
        "manifests": len(published["manifests"]),
        "schedule_version": version,
        "publish_s": round(publish_s, 3),
        "playing_s": spread(times),
        "all_playing_s": round(max(times), 2),
        "mean_playing_s": round(statistics.fmean(times), 2),
        "applied_s": spread(list(applied.values())),
        "converged": len(converged),
        "status_errors": hq.errors,
        "converged_s": spread(list(converged.values())),
        "first_schedule_playing_s": spread([first[s] for s in measured]),
        "baseline_s": round(statistics.median(baseline), 2),
        "baseline_rounds_s": [round(b, 2) for b in baseline],
        "all_playing_vs_baseline": round(max(times) / statistics.median(baseline), 1),
        "asset_bytes_served": int(served - served_before),
        "unit_bytes_sent": int(unit_bytes),
        # CPU seconds from the publish to the last store playing, against the wall time:
        # the stores share one process (two cores), where each store has its own box
        "stores_cpu_s": round(cpu[0], 1),
        "cloud_cpu_s": round(cpu[1], 1),
        "wall_s": round(wall_s, 2),
        "cloud_peak_rss_mb": cloud_rss,
        "stores_peak_rss_mb": peak_rss_mb(os.getpid()),
        "local_buses_pss_mb": round(buses_pss, 1),
        "fleet_up_s": round(fleet_up_s, 2),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="storefleet bench content",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--stores", type=int, default=100, help="simulated stores")
    parser.add_argument("--recording-s", type=float, default=30.0,
                        help="length of the new recording (8 kHz 16-bit mono WAV)")
    parser.add_argument("--baseline-rounds", type=int, default=3,
                        help="single-store publishes before the fleet's (median)")
    parser.add_argument("--timeout-s", type=float, default=300.0,
                        help="give up on any one wait after this long")
    args = parser.parse_args(argv)
    if args.stores < 1 or args.recording_s <= 0 or args.baseline_rounds < 1:
        parser.error("--stores, --recording-s and --baseline-rounds must be positive")
    # A hundred agents log their connects and applies: only what went wrong is shown.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="sf-bench-content-") as tmp:
        try:
            r = asyncio.run(measure(Path(tmp), stores=args.stores, seconds=args.recording_s,
                                    baseline_rounds=args.baseline_rounds,
                                    timeout_s=args.timeout_s))
        except BenchError as err:
            print(f"bench content: {err}", file=sys.stderr)
            return 2
        except httpx.HTTPError as err:  # the cloud's API went away mid-run
            print(f"bench content: {err!r} from the cloud's API", file=sys.stderr)
            return 2
    p = r["playing_s"]
    print(f"schedule v{r['schedule_version']} ({r['recording_bytes'] / 1024:.0f} KiB "
          f"recording) to {r['stores']} stores: publish call {r['publish_s']} s; playing "
          f"p50 {p['p50']} s, p95 {p['p95']} s, all {r['all_playing_s']} s "
          f"(one store alone: {r['baseline_s']} s, x{r['all_playing_vs_baseline']})")
    print(f"cloud: {r['asset_bytes_served'] / 1024 / 1024:.1f} MiB served, peak RSS "
          f"{r['cloud_peak_rss_mb']} MiB; stores' process peak RSS {r['stores_peak_rss_mb']} "
          f"MiB; local buses {r['local_buses_pss_mb']} MiB (PSS); status converged for "
          f"{r['converged']} stores, max {r['converged_s'].get('max')} s")
    if args.json:
        print(json.dumps(r, sort_keys=True))
    return 0 if r["playing"] == r["stores"] else 1


if __name__ == "__main__":
    sys.exit(main())
