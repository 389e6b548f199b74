"""The store box under a whole store's load: the agent's memory and CPU over time, and
how fast its outbox replays an hour-long outage (issue 16, decision 0059).

What runs: two Mosquittos (the cloud's broker, the uplink; the store's own, the local
bus, as a store box has in production), the cloud as its own process (``storefleet
cloud serve --ingest``, SQLite, ``bench._services.cloud``) and the production agent as
its own process (``storefleet edge run --config agent.toml``: the modules and devices
``storefleet demo`` gives its store, ``storefleet.demo._modules``). In this process, as
the demo wires them, the simulators speaking their real protocols: the vending cabinet,
scanner and customer display on ptys, the receipt printer with its cash drawer on TCP
(``firmware_sim.store.start_wired_sims``), and on the local bus ``--carts`` smart carts
(BLE scan reports at 5 Hz, basket snapshots, payment on the cart screen over HTTP),
the BLE beacons (through the replay radio the agent's scanner follows), the ESL access
point with its labels, the audio unit and the generic sensors (``StoreSimulator`` with
the demo's settings). HQ publishes the price book, promotions and the audio schedule
through the API first, as the demo does, so carts pay and labels and audio follow.

Part 1, memory: the agent process's RSS and CPU % sampled every ``--sample-s`` for
``--duration-s`` (psutil). ``rss_mb`` start / max / end; ``rss_slope_mb_per_min``, a
least-squares line through the samples after ``--warmup-s``; ``cpu_pct`` mean / p95
(100 = one core). ``events_per_s``: what the agent wrote to its outbox
(``storefleet_events_enqueued_total``) over the run: the store's event rate.

Part 2, outbox replay: the store's simulators stopped, the uplink broker killed, then an
hour's worth of events (``events_per_s`` x 3600, or ``--outage-events``) published by
a sensor on the local bus: the agent commits them to its outbox (``fill_s``). Mosquitto
is started again on its port; ``replay_s`` runs from the agent's new session to the
moment none of those events is left in its outbox, i.e. cloud ingest committed and
acknowledged every one (decision 0028); ``reconnect_s`` is the time before that, from
the broker listening to the agent's session (its reconnect backoff). ``replay_per_s``
against ``bare_publish_per_s``: in the same run, a bare paho client publishing the
same number of QoS 1 messages of the same size to the same broker with the agent's
window (100 in flight), to a topic nobody reads. The cloud's database is then read:
every outage event stored exactly once (``outage_stored``, ``outage_missing``).

    python -m bench.edge --json                         # 10 minutes, 300 carts
    storefleet bench edge --json --duration-s 10 --outage-events 2000 --carts 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench._services import (
    ADMIN_TOKEN,
    DEVICE_TOKEN,
    BenchError,
    cloud,
    free_port,
    metric_value,
    stop_process,
)
from bench.fleet import Mosquitto

logger = logging.getLogger(__name__)

STORE = "S001"
OUTAGE_DEVICE = "S001-sensor-outage"  # the sensor whose readings fill the outbox
OUTAGE_KIND = "sensor"
BASELINE_WINDOW = 100  # the agent's publish_window: QoS 1 publishes in flight
OUTAGE_S = 3600  # the outage the outbox is filled for: an hour
FILL_CHUNK = 5_000  # outage events published at once: half the agent's local_queue_max
POLL_S = 0.1  # outbox and metrics polls while replaying
WAIT_S = 120.0  # any one wait for a service (agent up, store online, outbox filled)
GOAL_RSS_MB = 200.0  # issue 16: the agent under 200 MB, and flat


def toml_value(value: Any) -> str:
    """``value`` as TOML (inline tables and arrays; JSON strings are TOML basic
    strings; None is left out of tables: TOML has no null)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return toml_value(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}"
                               for k, v in value.items() if v is not None) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise BenchError(f"no TOML for {value!r}")


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def agent_toml(agent: Mapping[str, Any], modules: Mapping[str, Mapping[str, Any]]) -> str:
    """The agent's config file: ``[agent]`` and one table per module."""
    lines = ["[agent]"] + [f"{toml_key(k)} = {toml_value(v)}" for k, v in agent.items()]
    for name, section in modules.items():
        lines += ["", f"[{toml_key(name)}]"]
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in section.items()
                  if v is not None]
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds since sampling began
    rss_mb: float
    cpu_pct: float  # since the previous sample; 100 = one core


def slope_per_min(samples: list[Sample]) -> float:
    """Least-squares slope of RSS over time, MB per minute (0 with fewer than 2)."""
    if len(samples) < 2:
        return 0.0
    mt = statistics.fmean(s.t for s in samples)
    mr = statistics.fmean(s.rss_mb for s in samples)
    den = sum((s.t - mt) ** 2 for s in samples)
    if den == 0:
        return 0.0
    return sum((s.t - mt) * (s.rss_mb - mr) for s in samples) / den * 60


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in (0, 100])."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def sample_process(pid: int, *, duration_s: float, every_s: float) -> list[Sample]:
    """RSS and CPU % of ``pid`` every ``every_s`` for ``duration_s`` (psutil reads
    /proc: a few hundred microseconds, on the loop)."""
    proc = psutil.Process(pid)
    proc.cpu_percent(None)  # the first call starts the interval
    t0 = time.monotonic()
    samples = [Sample(0.0, proc.memory_info().rss / 2**20, 0.0)]
    while (elapsed := time.monotonic() - t0) < duration_s:
        await asyncio.sleep(min(every_s, duration_s - elapsed))
        try:
            samples.append(Sample(time.monotonic() - t0, proc.memory_info().rss / 2**20,
                                  proc.cpu_percent(None)))
        except psutil.NoSuchProcess as err:
            raise BenchError(f"the agent (pid {pid}) exited during the run") from err
    return samples


class AgentMetricsPage:
    """The agent's Prometheus page, read over HTTP as a store's monitoring does."""

    def __init__(self, http: httpx.AsyncClient, port: int) -> None:
        self.http, self.url = http, f"http://127.0.0.1:{port}/metrics"

    async def value(self, name: str) -> float:
        return metric_value((await self.http.get(self.url)).text, name)

    async def total(self, name: str) -> float:
        """The sum of the metric's samples over all its labels."""
        text = (await self.http.get(self.url)).text
        return sum(float(m.group(1)) for m in re.finditer(
            rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


@contextlib.contextmanager
def agent_process(workdir: Path, config: str) -> Iterator[int]:
    """``storefleet edge run --config`` in its own process; yields its pid."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "agent.toml").write_text(config)
    argv = [sys.executable, "-m", "storefleet", "edge", "run", "--config",
            str(workdir / "agent.toml"), "--log-level", "WARNING"]
    with open(workdir / "agent.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        yield proc.pid
    finally:
        stop_process(proc)


def agent_log_tail(workdir: Path) -> str:
    with contextlib.suppress(OSError):
        return (workdir / "agent.log").read_text(errors="replace")[-2000:]
    return ""


async def until(what: str, done: Callable[[], Awaitable[bool]], *, timeout_s: float,
                every_s: float = 0.2) -> float:
    """Seconds until ``done()``; BenchError past ``timeout_s``."""
    t0 = time.monotonic()
    while not await done():
        if time.monotonic() - t0 > timeout_s:
            raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(every_s)
    return time.monotonic() - t0


def body_of(r: httpx.Response, what: str) -> Any:
    if r.status_code >= 300:
        raise BenchError(f"{what}: {r.status_code} {r.text[:300]}")
    return r.json()


# ---- part 2: the outage ------------------------------------------------------------------


def outage_events(n: int) -> list[tuple[str, bytes]]:
    """``n`` readings of one sensor as it publishes them (``firmware_sim.generic``):
    (event id, payload), ids in rising order (uuid7)."""
    from firmware_sim.generic import READING_KIND, SensorModel
    from protocols.codec import encode
    from protocols.ids import uuid7
    from protocols.messages import DeviceEvent

    sensor = SensorModel("env_sensor", random.Random(16))
    now = int(time.time() * 1000)
    out = []
    for _ in range(n):
        event = DeviceEvent(id=uuid7(now), kind=READING_KIND, ts=now, data=sensor.reading())
        out.append((event.id, encode(event)))
    return out


def publish_qos1(host: str, port: int, messages: list[tuple[str, bytes]], *,
                 window: int, client_id: str) -> float:
    """Publish (topic, payload) pairs at QoS 1 with ``window`` in flight; seconds from
    the first publish to the last PUBACK. Blocking: run it in a thread."""
    import paho.mqtt.client as mqtt

    done = threading.Event()
    # At most ``window`` unacknowledged publishes, held here rather than in paho's
    # queue: paho numbers a message when it is queued, and past 65,535 queued message
    # ids repeat and the publisher stalls (decision 0055 saw the same).
    slots = threading.Semaphore(window)
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1
        slots.release()
        if acked == len(messages):
            done.set()

    connected = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.max_inflight_messages_set(window)
    client.on_publish = on_publish
    client.on_connect = lambda *_: connected.set()
    client.connect(host, port, keepalive=60)
    client.loop_start()
    try:
        if not connected.wait(30):
            raise BenchError(f"paho did not connect to {host}:{port}")
        t0 = time.perf_counter()
        for topic, payload in messages:
            if not slots.acquire(timeout=60):
                raise BenchError(f"no PUBACK from {host}:{port} in 60 s")
            client.publish(topic, payload, qos=1)
        if not done.wait(600):
            raise BenchError(f"{len(messages) - acked} of {len(messages)} publishes not "
                             "acknowledged in 600 s")
        return time.perf_counter() - t0
    finally:
        client.disconnect()
        client.loop_stop()


class Outbox:
    """The agent's outbox database, read-only (WAL: the agent's writes go on)."""

    def __init__(self, path: Path, lo: str, hi: str) -> None:
        self.path, self.lo, self.hi = path, lo, hi

    def _query(self, sql: str) -> list[Any]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, (self.lo, self.hi)).fetchall()
        finally:
            conn.close()

    def held(self) -> int:
        """Rows whose id is in the outage events' range (theirs, and any other event
        made in the same milliseconds)."""
        return int(self._query("SELECT count(*) FROM rows WHERE id BETWEEN ? AND ?")[0][0])

    def ids(self) -> set[str]:
        return {r[0] for r in self._query("SELECT id FROM rows WHERE id BETWEEN ? AND ?")}


def cloud_stored(db: Path, ids: list[str]) -> tuple[int, int]:
    """(outage events the cloud holds, rows it holds for them): equal when none is
    stored twice."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT id FROM events WHERE store_id = ? AND device_id = ?",
                            (STORE, OUTAGE_DEVICE)).fetchall()
    finally:
        conn.close()
    got = [r[0] for r in rows]
    return len(set(got) & set(ids)), len(got)


async def outage(*, uplink: Mosquitto, local_url: str, page: AgentMetricsPage,
                 outbox_db: Path, cloud_db: Path, events: int, timeout_s: float
                 ) -> dict[str, Any]:
    from protocols import topics

    made = outage_events(events)
    ids = [i for i, _ in made]
    outbox = Outbox(outbox_db, min(ids), max(ids))
    uplink.kill()

    async def down() -> bool:
        return await page.value("storefleet_uplink_connected") == 0
    await until("the agent to see the uplink down", down, timeout_s=timeout_s)

    host, port = local_url.removeprefix("mqtt://").rsplit(":", 1)
    topic = topics.local(OUTAGE_KIND, OUTAGE_DEVICE, "up", "evt")
    t0 = time.perf_counter()
    # In chunks the agent takes in before the next: an hour's events at once left most of
    # them queued for the agent's session, and after a session restart Mosquitto sent
    # them past its inflight bound, over the agent's receive queue, which restarted the
    # session again, and so on (decision 0059: the fill stalled at 27,000 of 101,000).
    for first in range(0, events, FILL_CHUNK):
        chunk = made[first:first + FILL_CHUNK]
        await asyncio.to_thread(publish_qos1, host, int(port), [(topic, p) for _, p in chunk],
                                window=BASELINE_WINDOW, client_id="bench-edge-outage-sensor")
        taken = first + len(chunk)

        async def filled(taken: int = taken) -> bool:
            return await asyncio.to_thread(outbox.held) >= taken
        await until(f"{taken} events in the agent's outbox", filled, timeout_s=timeout_s)
    fill_s = time.perf_counter() - t0
    missing = set(ids) - await asyncio.to_thread(outbox.ids)
    if missing:
        raise BenchError(f"{len(missing)} outage events not in the outbox")
    depth = await page.value("storefleet_outbox_depth")
    connects = await page.value("storefleet_uplink_connects_total")
    resent0 = await page.total("storefleet_uplink_resent_total")

    uplink.start()
    back = time.perf_counter()

    async def reconnected() -> bool:
        return await page.value("storefleet_uplink_connects_total") > connects
    reconnect_s = await until("the agent's new uplink session", reconnected,
                              timeout_s=timeout_s, every_s=POLL_S)
    t1 = time.perf_counter()

    async def empty() -> bool:
        return await asyncio.to_thread(outbox.held) == 0
    await until("the outbox to replay", empty, timeout_s=timeout_s, every_s=POLL_S)
    replay_s = time.perf_counter() - t1
    back_to_empty_s = time.perf_counter() - back
    stored, rows = await asyncio.to_thread(cloud_stored, cloud_db, ids)

    # The baseline: the same count of QoS 1 messages, same size, same broker and window.
    size = len(made[0][1]) + 200  # the uplink envelope adds store, seq and the like
    baseline = [(f"bench/edge/baseline/{i % 100}", os.urandom(size // 2).hex().encode())
                for i in range(events)]
    bare_s = await asyncio.to_thread(publish_qos1, "127.0.0.1", uplink.port, baseline,
                                     window=BASELINE_WINDOW, client_id="bench-edge-bare")
    return {
        "outbox_events": events,
        "outbox_depth_at_outage": int(depth),
        "fill_s": round(fill_s, 2),
        "reconnect_s": round(reconnect_s, 2),
        "replay_s": round(replay_s, 2),
        "broker_back_to_empty_s": round(back_to_empty_s, 2),
        "replay_per_s": round(events / replay_s, 1),
        "bare_publish_s": round(bare_s, 2),
        "bare_publish_per_s": round(events / bare_s, 1),
        "bare_payload_bytes": size,
        "replay_ratio": round((events / replay_s) / (events / bare_s), 3),
        "resent": int(await page.total("storefleet_uplink_resent_total") - resent0),
        "outage_stored": stored,
        "outage_rows_in_cloud": rows,
        "outage_missing": events - stored,
    }


# ---- part 1: the store running -----------------------------------------------------------


async def hq_opens_the_store(http: httpx.AsyncClient) -> dict[str, Any]:
    """What ``storefleet demo`` has HQ do before the store opens: price book,
    promotions, coupon ranges and member (``demo_retail.hq_setup``), the shelf labels'
    prices and the audio schedule (``demo_content.push_store_content``)."""
    from edge_agent.cartscreen import SAMPLE_DATA
    from storefleet import demo_retail
    from storefleet.demo_content import push_store_content

    sample = demo_retail.load_sample(SAMPLE_DATA)
    content = await push_store_content(http, STORE,
                                       shelf_book=demo_retail.shelf_prices(sample))
    try:
        await demo_retail.hq_setup(http, STORE, sample)
    except RuntimeError as err:  # what demo_retail raises for a refused API call
        raise BenchError(f"HQ could not open the store: {err}") from err
    return content


def store_config(tmp: Path, *, uplink: str, local: str, api: str, metrics_port: int,
                 keys: Mapping[str, str], wired: list[dict[str, Any]],
                 radio_path: Path) -> tuple[str, str]:
    """The agent's config file (the demo store's devices and modules, the kernel's
    production defaults) and its cart-screen URL."""
    from edge_agent.cartscreen import SAMPLE_DATA
    from firmware_sim.layouts import DEFAULT_LAYOUT
    from firmware_sim.store import store_device_configs
    from storefleet import demo_retail
    from storefleet.demo import _modules

    currency = str(demo_retail.load_sample(SAMPLE_DATA)["catalog"]["currency"])
    modules = _modules(True, api=api, token=DEVICE_TOKEN, trusted_key=keys["signing"],
                       release_key=keys["release"], currency=currency)
    port = free_port()
    modules["in_aisle"] = {**modules["in_aisle"], "cartscreen_port": port}
    devices = store_device_configs(DEFAULT_LAYOUT, radio_path=radio_path, store_id=STORE,
                                   audio_cache_dir=tmp / "edge" / "audio") + wired
    kernel = {"store_id": STORE, "data_dir": tmp / "edge", "cloud_url": uplink,
              "local_bus": local, "metrics_port": metrics_port,
              "metrics_host": "127.0.0.1", "devices": devices}
    return agent_toml(kernel, modules), f"http://127.0.0.1:{port}"


def store_bus(workdir: Path) -> Mosquitto:
    """The store's own Mosquitto with the flow control of
    ``deploy/mosquitto/store-bus.conf``: at most 200 QoS 1 messages in flight to a
    client, so a device's backlog reaches the agent at the pace it acknowledges (with
    no bound the broker sends all of it at once, past the agent's receive queue, and
    the agent's session restarts over and over: decision 0059)."""
    bus = Mosquitto(workdir)
    (workdir / "mosquitto.conf").write_text(
        f"listener {bus.port} 127.0.0.1\nallow_anonymous true\n"
        "max_queued_messages 100000\nmax_inflight_messages 200\n"
        + ("user root\n" if os.geteuid() == 0 else ""))  # workdir is root's
    return bus


def rss_figures(samples: list[Sample], *, warmup_s: float) -> dict[str, Any]:
    steady = [s for s in samples if s.t >= warmup_s]
    cpu = [s.cpu_pct for s in samples[1:]]
    return {
        "rss_mb_start": round(samples[0].rss_mb, 1),
        "rss_mb_max": round(max(s.rss_mb for s in samples), 1),
        "rss_mb_end": round(samples[-1].rss_mb, 1),
        "rss_slope_mb_per_min": round(slope_per_min(steady), 3),
        "rss_samples": len(samples),
        "rss_samples_fitted": len(steady),
        "cpu_pct_mean": round(statistics.fmean(cpu), 1) if cpu else 0.0,
        "cpu_pct_p95": round(percentile(cpu, 95), 1) if cpu else 0.0,
    }


async def measure(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from firmware_sim.layouts import DEFAULT_LAYOUT
    from firmware_sim.store import StoreSimulator, start_wired_sims
    from storefleet.demo import DEMO_DWELL_S
    from storefleet.demo_content import device_families

    uplink, bus = Mosquitto(tmp / "uplink"), store_bus(tmp / "local")
    uplink.start()
    bus.start()
    local = bus.url
    try:
        with cloud(tmp / "cloud", broker=uplink.url) as (api, cloud_pid):
            async with contextlib.AsyncExitStack() as stack:
                http = await stack.enter_async_context(httpx.AsyncClient(
                    base_url=api, timeout=60,
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}))
                keys = {
                    "release": body_of(await http.get("/api/v1/artifacts/keys"),
                                       "release keys")[0]["public_key"],
                    "signing": body_of(await http.get("/api/v1/promotions/keys"),
                                       "signing keys")[0]["public_key"]}
                wired, closers = await start_wired_sims(STORE)
                for close in closers:
                    stack.push_async_callback(close)
                radio_path = tmp / "ble-air.jsonl"
                radio_path.write_bytes(b"")
                metrics_port = free_port()
                config, screen_url = store_config(
                    tmp, uplink=uplink.url, local=local, api=api, metrics_port=metrics_port,
                    keys=keys, wired=wired, radio_path=radio_path)
                pid = stack.enter_context(agent_process(tmp / "agent", config))
                page = AgentMetricsPage(http, metrics_port)

                async def ready() -> bool:
                    if not psutil.pid_exists(pid):
                        raise BenchError("the agent exited: " + agent_log_tail(tmp / "agent"))
                    with contextlib.suppress(httpx.TransportError):
                        return await page.value("storefleet_uplink_cloud_ready") == 1
                    return False
                await until("the agent's uplink answered by the cloud", ready,
                            timeout_s=WAIT_S)

                sim = StoreSimulator(
                    bus_url=local, store_id=STORE, devices=6, rate=20.0, tele_interval_s=2.0,
                    layout=DEFAULT_LAYOUT, carts=args.carts, radio_path=radio_path,
                    cart_snapshots=True, unscanned_share=0.15,
                    # the layout's path-loss radio, not firmware_sim.rf's site survey (the
                    # demo's): rf costs the simulator ~2.5 ms of CPU a scan report, 3.7
                    # cores for 300 carts at 5 Hz; the agent gets the same reports either way
                    cart_site_radio=False,
                    cart_dwell_s=DEMO_DWELL_S, cart_screen_url=screen_url)
                sim_stop = asyncio.Event()
                sim_task = asyncio.create_task(sim.run(sim_stop), name="bench-edge-store")
                # HQ opens the store as in the demo: once the units are on the bus
                content = await hq_opens_the_store(http)

                async def shopping() -> bool:
                    if sim_task.done():
                        sim_task.result()
                        raise BenchError("the store simulator stopped")
                    return len(sim.cart_sims) == args.carts and all(
                        c.connected.is_set() for c in sim.cart_sims)
                await until(f"{args.carts} carts on the bus", shopping, timeout_s=WAIT_S)

                enqueued0 = await page.value("storefleet_events_enqueued_total")
                t0 = time.monotonic()
                samples = await sample_process(pid, duration_s=args.duration_s,
                                               every_s=args.sample_s)
                window_s = time.monotonic() - t0
                enqueued = await page.value("storefleet_events_enqueued_total") - enqueued0
                devices = body_of(await http.get("/api/v1/devices",
                                                 params={"limit": 1000}), "devices")
                local_dropped = await page.total("storefleet_local_messages_dropped_total")
                sim_stop.set()
                try:
                    await asyncio.wait_for(sim_task, 90)
                except TimeoutError:
                    logger.warning("the store simulator was slow to stop; cut off")
                rate = enqueued / window_s
                memory = rss_figures(samples, warmup_s=min(args.warmup_s, args.duration_s / 3))
                # said now: the outage part can fail or be stopped (the samples are kept)
                print(f"part 1: {json.dumps(memory)}; {rate:.2f} events/s; samples "
                      f"{[(round(x.t), round(x.rss_mb, 1)) for x in samples]}",
                      file=sys.stderr, flush=True)
                events = args.outage_events or max(1, round(rate * OUTAGE_S))
                part2 = await outage(uplink=uplink, local_url=local, page=page,
                                     outbox_db=tmp / "edge" / "outbox.db",
                                     cloud_db=tmp / "cloud" / "cloud.db", events=events,
                                     timeout_s=args.timeout_s)
                carts = sim.cart_sims
                return {
                    "bench": "edge",
                    "duration_s": args.duration_s,
                    "carts": args.carts,
                    "families": device_families(devices),
                    "families_simulated": sorted(set(sim.families_started) | {
                        "pos" if d["family"] in {"printer", "scanner", "display"}
                        else str(d["family"]) for d in wired}),
                    "devices_online": sum(1 for d in devices if d["online"]),
                    **memory,
                    "rss_goal_mb": GOAL_RSS_MB,
                    "agent_peak_rss_mb": round(psutil.Process(pid).memory_info().rss / 2**20, 1),
                    "events_enqueued": int(enqueued),
                    "events_per_s": round(rate, 2),
                    "scans_sent": sum(c.scans_sent for c in carts),
                    "cart_sessions": sum(len(c.sessions) for c in carts),
                    "cart_paid": sum(c.paid for c in carts),
                    "cart_checkout_failures": sum(c.checkout_failures for c in carts),
                    "local_dropped": int(local_dropped),
                    "content": content,
                    **part2,
                    "cloud_pid_rss_mb": round(psutil.Process(cloud_pid).memory_info().rss
                                              / 2**20, 1),
                    "cpus": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(),
                }
    finally:
        uplink.kill()
        bus.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="storefleet bench edge",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--duration-s", type=float, default=600.0,
                        help="how long the agent's RSS and CPU are sampled")
    parser.add_argument("--sample-s", type=float, default=5.0, help="between samples")
    parser.add_argument("--warmup-s", type=float, default=60.0,
                        help="samples before this are left out of the slope (at most a "
                             "third of the duration)")
    parser.add_argument("--carts", type=int, default=300, help="smart carts shopping")
    parser.add_argument("--outage-events", type=int, default=0,
                        help="events in the outbox for the replay (0: the store's event "
                             "rate times an hour)")
    parser.add_argument("--timeout-s", type=float, default=600.0,
                        help="give up on any one wait after this long")
    args = parser.parse_args(argv)
    if args.duration_s <= 0 or args.sample_s <= 0 or args.carts < 0 or args.outage_events < 0:
        parser.error("--duration-s and --sample-s must be positive, --carts and "
                     "--outage-events not negative")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # aiomqtt warns of every publish that waits behind others ("There are N pending
    # publish calls"): 300 carts at 5 Hz on one loop queue a few now and then
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    # the cloud as the demo's: prices in the sample catalog's currency, members enrolled
    # (the cloud process inherits this environment)
    os.environ.setdefault("STOREFLEET_CURRENCY", "CNY")
    os.environ.setdefault("STOREFLEET_MEMBER_HASH_KEY", os.urandom(24).hex())
    with tempfile.TemporaryDirectory(prefix="sf-bench-edge-") as tmp:
        try:
            r = asyncio.run(measure(Path(tmp), args))
        except BenchError as err:
            print(f"bench edge: {err}", file=sys.stderr)
            return 2
        except httpx.HTTPError as err:
            print(f"bench edge: {err!r} from the cloud's API or the agent's metrics",
                  file=sys.stderr)
            return 2
    print(f"agent with {r['carts']} carts and {len(r['families'])} device families online "
          f"({', '.join(r['families'])}) for {r['duration_s']:.0f} s: RSS "
          f"{r['rss_mb_start']} -> max {r['rss_mb_max']} -> {r['rss_mb_end']} MB, slope "
          f"{r['rss_slope_mb_per_min']} MB/min; CPU mean {r['cpu_pct_mean']} %, p95 "
          f"{r['cpu_pct_p95']} %; {r['events_per_s']} events/s into the outbox")
    print(f"outage of {r['outbox_events']} events: replayed in {r['replay_s']} s "
          f"({r['replay_per_s']}/s, acknowledged by the cloud) after {r['reconnect_s']} s "
          f"reconnecting; bare paho {r['bare_publish_per_s']}/s, ratio {r['replay_ratio']}; "
          f"{r['outage_stored']} stored, {r['outage_missing']} missing")
    if args.json:
        print(json.dumps(r, sort_keys=True))
    ok = (r["outage_missing"] == 0 and r["outage_rows_in_cloud"] == r["outbox_events"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
